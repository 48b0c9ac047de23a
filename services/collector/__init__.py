"""The collector: exactly-once capture into ClickHouse, workflow insight, candidate detection, read API.

The only writer of ClickHouse (``clickhouse/``); ``python -m services.collector``.
"""
