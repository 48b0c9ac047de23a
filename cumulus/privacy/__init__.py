"""Personal data and secrets in captured traffic: detectors (detectors.py, checks.py), the
redactor that replaces them with placeholders (redactor.py), redaction of whole events
(events.py) and each tenant's policy with the deployment's key (policy.py)."""
