"""The judge: grades shadow pairs (live vs candidate) into verdicts for the router.

``python -m services.judge``.
"""
