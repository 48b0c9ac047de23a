"""The gateway: the front doors (cumulus.v1.Gateway, the KServe v2 drop-in), routing, shadow, capture.

``python -m services.gateway``.
"""
