"""The CPU model host: the real tritonserver bundled in PyTriton serving `live` and `small`.

Run it with ``python -m services.inference``; see ``server.py`` for the request interface.
"""
