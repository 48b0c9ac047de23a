"""The ClickHouse schema as data: every table and view, its columns, and the DDL built from them.

The collector is the single writer. Each event table is a ReplacingMergeTree whose sorting key
ends in what identifies one fact (``event_id``; ``verdict_id`` for verdicts; ``adapter_id`` for
adapters, whose latest version wins), so an event delivered twice (a producer retry, a replayed
spool) collapses to one row at merge time; counting reads use ``FINAL`` or ``argMax``. A batch retried after a
crash is dropped on insert already: every table keeps the hashes of its last ``DEDUP_WINDOW``
insert blocks, keyed by the batch's ``insert_deduplication_token`` (see ``client.insert_rows``).

Sorting keys put ``occurred_at`` before ``event_id``: an event's timestamp never changes, so the
key still identifies the event, and per-workflow time-range reads (stats, dataset export) skip
whole granules.

``ensure_schema`` only creates what is missing (``IF NOT EXISTS``) and adds the columns a table
made by an older release lacks (``missing_column_statements``): columns are only ever added, never
renamed, retyped or dropped, so upgrading in place keeps every row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clickhouse_connect.driver.exceptions import OperationalError

from cumulus.errors import ConfigError, NotReady

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE = "cumulus"
DEDUP_WINDOW = 1000
"""Insert blocks whose hashes each table remembers; a retry older than this is inserted again."""
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TS = "DateTime64(3, 'UTC')"
_LC = "LowCardinality(String)"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default: str | None = None
    """SQL expression the server fills in; such columns are left out of inserts."""
    codec: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns (in insert order), engine and keys."""

    name: str
    columns: tuple[Column, ...]
    engine: str
    order_by: str
    partition_by: str | None = None
    indexes: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def insert_columns(self) -> tuple[str, ...]:
        """Columns a writer supplies, in order: everything without a server-side default."""
        return tuple(c.name for c in self.columns if c.default is None)

    def create_sql(self, database: str) -> str:
        lines = [_column_sql(c) for c in self.columns] + [f"INDEX {i}" for i in self.indexes]
        body = ",\n    ".join(lines)
        partition = f"\nPARTITION BY {self.partition_by}" if self.partition_by else ""
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}` (\n    {body}\n)\n"
            f"ENGINE = {self.engine}{partition}\nORDER BY {self.order_by}\n"
            f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
        )


@dataclass(frozen=True)
class ViewSpec:
    """A materialized view writing into an existing table; ``select`` names tables as ``{db}.x``."""

    name: str
    target: str
    select: str

    def create_sql(self, database: str) -> str:
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{database}`.`{self.name}` "
            f"TO `{database}`.`{self.target}` AS\n{self.select.format(db=f'`{database}`')}"
        )


def _column_sql(column: Column) -> str:
    sql = f"`{column.name}` {column.type}"
    if column.default is not None:
        sql += f" DEFAULT {column.default}"
    if column.codec:
        sql += f" CODEC({column.codec})"
    return sql


_INGESTED_AT = Column("ingested_at", _TS, default="now64(3)")
# Entities replaced by placeholders before the row was stored, by kind (never the values).
_REDACTED = Column("redacted", f"Map({_LC}, UInt32)")

REQUESTS = TableSpec(
    "requests",
    (
        Column("event_id", "String"),
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("workflow_source", _LC),  # "client" (named by the caller) or "fingerprint" (derived)
        Column("fingerprint", "String"),  # prompt-template fingerprint, even when the client named it
        Column("request_id", "String"),
        Column("session_key", "String"),
        Column("occurred_at", _TS),
        Column("published_at", _TS),  # handed to Kafka by the gateway: ingested_at - this = freshness
        Column("model", _LC),  # the Triton model that answered: live or small
        Column("adapter_id", "String"),  # empty when a bare model answered
        Column("adapter_version", "String"),
        Column("route_mode", _LC),  # live / canary / fallback / promoted
        Column("prompt", "String", codec="ZSTD(3)"),  # rendered text_input sent to Triton
        Column("messages", "String", codec="ZSTD(3)"),  # JSON chat messages as received
        Column("tools", "String", codec="ZSTD(3)"),  # JSON tool schemas as received
        Column("params", "String"),  # JSON generation parameters (max_tokens, temperature, ...)
        Column("response", "String", codec="ZSTD(3)"),
        Column("prompt_tokens", "UInt32"),
        Column("completion_tokens", "UInt32"),
        Column("latency_ms", "Float32"),
        Column("ttft_ms", "Float32"),  # time to first token; 0 when not streamed
        Column("status", _LC),  # "ok" or the gRPC status name of the error
        Column("error", "String"),
        Column("candidate_error", "String"),  # a canary candidate failed and the live model answered
        Column("metadata", f"Map({_LC}, String)"),
        _REDACTED,
        _INGESTED_AT,
    ),
    engine="ReplacingMergeTree",
    order_by="(tenant, workflow, occurred_at, event_id)",
    partition_by="toYYYYMM(occurred_at)",
    # Feedback and verdicts refer to a request by id; without this a lookup reads the whole table.
    indexes=("idx_request_id request_id TYPE bloom_filter(0.01) GRANULARITY 4",),
)

VERDICTS = TableSpec(
    "verdicts",
    (
        Column("event_id", "String"),
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("verdict_id", "String"),  # derived from pair and grader: a re-graded pair keeps it
        Column("pair_id", "String"),  # the shadow pair graded
        Column("adapter_id", "String"),
        Column("occurred_at", _TS),
        Column("grader", _LC),  # label / json / tool_call / semantic / pairwise
        Column("score", "Float64"),
        Column("passed", "Bool"),
        Column("details", "String", codec="ZSTD(3)"),  # JSON, grader specific
        Column("live_latency_ms", "Float32"),
        Column("candidate_latency_ms", "Float32"),
        Column("candidate_error", "Bool"),
        Column("reference", _LC),  # live (agreement) or gold (against the request's feedback)
        Column("live_score", "Float64"),  # gold verdicts: live's answer against the same feedback
        Column("live_passed", "Bool"),
        Column("request_id", "String"),
        _INGESTED_AT,
    ),
    # Keyed by verdict_id, not event_id: a shadow pair graded twice (the judge restarted before
    # committing) is one verdict, whatever event carried it.
    engine="ReplacingMergeTree",
    order_by="(tenant, workflow, adapter_id, verdict_id)",
    partition_by="toYYYYMM(occurred_at)",
)

ADAPTERS = TableSpec(
    "adapters",
    (
        Column("event_id", "String"),  # the AdapterEvent that wrote this version of the row
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("adapter_id", "String"),
        Column("candidate_id", "String"),
        Column("dataset_id", "String"),
        Column("base_model", _LC),
        Column("status", _LC),  # training / ready / rejected / failed
        Column("progress", "Float32"),  # 0..1 while training
        Column("artifact_uri", "String"),
        Column("lora_task_id", "UInt64"),
        Column("version", "String"),
        Column("offline_score", "Float64"),
        Column("gate_passed", "Bool"),
        Column("metrics", f"Map({_LC}, Float64)"),  # offline eval results
        Column("error", "String"),
        Column("updated_at", _TS),  # occurred_at of the event
        _INGESTED_AT,
    ),
    # One row per adapter once merged: the version with the latest updated_at wins.
    engine="ReplacingMergeTree(updated_at)",
    order_by="(tenant, workflow, adapter_id)",
)

ROLLOUT_EVENTS = TableSpec(
    "rollout_events",
    (
        Column("event_id", "String"),
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("rollout_id", "String"),
        Column("adapter_id", "String"),
        Column("occurred_at", _TS),
        Column("from_state", _LC),
        Column("to_state", _LC),  # shadow / canary / promoted / rolled_back / paused
        Column("step", "UInt32"),  # canary step index after the decision
        Column("weight", "Float64"),  # traffic share after the transition, 0..1
        Column("reason", "String"),
        Column("actor", _LC),  # the producer of the decision: router, or cli for operator commands
        Column("evidence", f"Map({_LC}, Float64)"),  # bound, n, error rate ... behind the decision
        _INGESTED_AT,
    ),
    engine="ReplacingMergeTree",
    order_by="(tenant, workflow, adapter_id, occurred_at, event_id)",
    partition_by="toYYYYMM(occurred_at)",
)

FEEDBACK = TableSpec(
    "feedback",
    (
        Column("event_id", "String"),
        Column("tenant", _LC),
        Column("workflow", _LC),  # of the request, as the gateway that answered it remembered
        Column("request_id", "String"),
        Column("occurred_at", _TS),
        Column("score", "Nullable(Float64)"),  # optional in the event: NULL when not given
        Column("label", _LC),
        Column("correction", "String", codec="ZSTD(3)"),  # the answer the model should have given
        Column("comment", "String"),
        _REDACTED,
        _INGESTED_AT,
    ),
    engine="ReplacingMergeTree",
    order_by="(tenant, request_id, event_id)",
)

DRIFT_SIGNALS = TableSpec(
    "drift_signals",
    (
        Column("event_id", "String"),
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("adapter_id", "String"),  # the promoted adapter whose traffic drifted
        Column("dataset_id", "String"),  # what it was trained on: the reference the signal measures from
        Column("occurred_at", _TS),
        Column("signal", _LC),  # new_tools / template / prompt_length / output_shape / feedback
        Column("severity", _LC),  # notice / warning / critical
        Column("detail", "String"),
        Column("evidence", f"Map({_LC}, Float64)"),
        _INGESTED_AT,
    ),
    # Captured from cumulus.drift.v1 like every other event (the collector published it itself).
    engine="ReplacingMergeTree",
    order_by="(tenant, workflow, adapter_id, occurred_at, event_id)",
    partition_by="toYYYYMM(occurred_at)",
)

AUDIT_ANSWERS = TableSpec(
    "audit_answers",
    (
        Column("event_id", "String"),  # the ShadowPair's
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("request_id", "String"),  # the request a promoted adapter answered (in `requests`)
        Column("adapter_id", "String"),  # that adapter
        Column("occurred_at", _TS),
        Column("response", "String", codec="ZSTD(3)"),  # the live model's answer to the same prompt
        Column("completion_tokens", "UInt32"),
        Column("latency_ms", "Float32"),
        _REDACTED,
        _INGESTED_AT,
    ),
    # The live side of the router's audit after promotion: fresh training data for the next
    # version. Kept apart from `requests`, so a request is never counted twice; one per request.
    engine="ReplacingMergeTree",
    order_by="(tenant, workflow, request_id)",
    partition_by="toYYYYMM(occurred_at)",
)

CANDIDATES = TableSpec(
    "candidates",
    (
        Column("candidate_id", "String"),
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("occurred_at", _TS),
        Column("nominated_by", _LC),  # auto (detection) or manual (CLI)
        Column("reason", "String"),
        Column("evidence", f"Map({_LC}, Float64)"),
        Column("dataset_id", "String"),
        Column("dataset_uri", "String"),
        Column("train_examples", "UInt32"),
        Column("holdout_examples", "UInt32"),
        Column("base_model", _LC),
        Column("parent_adapter_id", "String"),  # the promoted version it would replace ('' for a first)
        _INGESTED_AT,
    ),
    # Written by the collector itself when it nominates (the CandidateEvent it publishes mirrors it).
    engine="ReplacingMergeTree",
    order_by="(tenant, workflow, candidate_id)",
)

ERASURES = TableSpec(
    "erasures",
    (
        Column("erasure_id", "String"),
        Column("tenant", _LC),
        Column("kind", _LC),  # request / session / user / tenant (as stored: pseudonyms for the last two)
        Column("value", "String"),
        Column("occurred_at", _TS),
    ),
    # What was erased, so that an event still in Kafka or a gateway's spool is dropped when it
    # arrives instead of bringing the rows back (services/collector/erasure.py).
    engine="ReplacingMergeTree",
    order_by="(tenant, kind, value)",
)

WORKFLOW_STATS_MINUTE = TableSpec(
    "workflow_stats_minute",
    (
        Column("tenant", _LC),
        Column("workflow", _LC),
        Column("minute", "DateTime('UTC')"),
        Column("route_mode", _LC),
        Column("adapter_id", "String"),
        Column("requests", "SimpleAggregateFunction(sum, UInt64)"),
        Column("errors", "SimpleAggregateFunction(sum, UInt64)"),
        Column("prompt_tokens", "SimpleAggregateFunction(sum, UInt64)"),
        Column("completion_tokens", "SimpleAggregateFunction(sum, UInt64)"),
        Column("latency_ms", "AggregateFunction(quantiles(0.5, 0.95, 0.99), Float32)"),
        Column("last_seen", f"SimpleAggregateFunction(max, {_TS})"),
    ),
    engine="AggregatingMergeTree",
    order_by="(tenant, workflow, minute, route_mode, adapter_id)",
    partition_by="toYYYYMM(minute)",
)

# Fed by every block inserted into `requests`: a retried batch (same token) is skipped, but an
# event that arrived in two *different* batches is counted twice here for good, while `requests`
# collapses it on merge. Exact numbers come from `requests FINAL`; these are for dashboards.
WORKFLOW_STATS_MINUTE_MV = ViewSpec(
    "workflow_stats_minute_mv",
    target=WORKFLOW_STATS_MINUTE.name,
    select="""SELECT
    tenant, workflow, toStartOfMinute(occurred_at) AS minute, route_mode, adapter_id,
    count() AS requests,
    countIf(status != 'ok') AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms,
    max(occurred_at) AS last_seen
FROM {db}.requests
GROUP BY tenant, workflow, minute, route_mode, adapter_id""",
)

TABLES: tuple[TableSpec, ...] = (
    REQUESTS,
    VERDICTS,
    ADAPTERS,
    ROLLOUT_EVENTS,
    FEEDBACK,
    CANDIDATES,
    DRIFT_SIGNALS,
    AUDIT_ANSWERS,
    ERASURES,
    WORKFLOW_STATS_MINUTE,
)
VIEWS: tuple[ViewSpec, ...] = (WORKFLOW_STATS_MINUTE_MV,)


def schema_statements(database: str = DEFAULT_DATABASE) -> list[str]:
    """Every DDL statement, in the order they must run (a view after the tables it reads and writes)."""
    _check_identifier(database)
    return [
        f"CREATE DATABASE IF NOT EXISTS `{database}`",
        *(t.create_sql(database) for t in TABLES),
        *(v.create_sql(database) for v in VIEWS),
    ]


def ensure_schema(client: Client, database: str = DEFAULT_DATABASE) -> None:
    """Create what does not exist yet and add columns a newer release declares; safe on every start."""
    try:
        for statement in schema_statements(database):
            client.command(statement)
        for statement in missing_column_statements(client, database):
            client.command(statement)
    except OperationalError as exc:
        raise NotReady(f"ClickHouse unreachable while creating the schema: {exc}") from exc


def missing_column_statements(client: Client, database: str) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for each declared column a table made by an older release lacks.

    Columns are only ever added (at the end of a table's declaration, before ``ingested_at``), so
    an upgrade keeps every row; old rows read the new column's type default (0, false, '').
    """
    existing: dict[str, set[str]] = {}
    result = client.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String}", parameters={"db": database}
    )
    for table, name in result.result_rows:
        existing.setdefault(str(table), set()).add(str(name))
    statements = []
    for table in TABLES:
        have = existing.get(table.name, set())
        for previous, column in zip(table.columns, table.columns[1:], strict=False):
            if column.name not in have:
                statements.append(
                    f"ALTER TABLE `{database}`.`{table.name}` ADD COLUMN IF NOT EXISTS "
                    f"{_column_sql(column)} AFTER `{previous.name}`"
                )
                have.add(column.name)
    return statements


def _check_identifier(database: str) -> None:
    # The name is spliced into DDL, so only plain identifiers are accepted.
    if not _IDENTIFIER_RE.match(database):
        raise ConfigError(
            f"clickhouse.database: {database!r} is not a plain identifier",
            fix="use letters, digits and underscores, starting with a letter (e.g. cumulus)",
        )
