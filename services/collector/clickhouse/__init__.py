"""ClickHouse access for both engines (embedded chDB, ClickHouse server) and the schema as data."""

from services.collector.clickhouse.client import (
    ClickHouseTarget,
    chdb_owner,
    connect,
    dedup_token,
    insert_rows,
    parse_dsn,
)
from services.collector.clickhouse.schema import (
    DEFAULT_DATABASE,
    TABLES,
    VIEWS,
    Column,
    TableSpec,
    ViewSpec,
    ensure_schema,
    schema_statements,
)

__all__ = [
    "DEFAULT_DATABASE",
    "TABLES",
    "VIEWS",
    "ClickHouseTarget",
    "Column",
    "TableSpec",
    "ViewSpec",
    "chdb_owner",
    "connect",
    "dedup_token",
    "ensure_schema",
    "insert_rows",
    "parse_dsn",
    "schema_statements",
]
