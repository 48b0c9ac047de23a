"""Operator tools beside the services: the ``cumulus`` CLI, the local stack and the closed-loop demo.

Nothing here runs inside a service; the services and the core never import it.
"""
