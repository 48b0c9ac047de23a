"""The router: one rollout per (tenant, workflow), advanced or rolled back by sequential-test gates.

``python -m services.router``.
"""
