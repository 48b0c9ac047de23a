"""Cumulus services, one package each; run with `python -m services.<name>`."""
