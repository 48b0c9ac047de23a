"""One DSN, two engines: embedded chDB or a ClickHouse server, both through clickhouse-connect.

Accepted DSNs (``clickhouse.dsn``):

- ``chdb:///abs/path`` — embedded chDB storing its data under ``/abs/path`` (the local default).
- ``chdb://memory`` — embedded chDB in memory (tests, throwaway runs).
- ``http://[user[:password]@]host[:port][/database]`` and ``https://...`` — a ClickHouse server.

chDB hosts one engine (one data directory) per process, and a directory belongs to one process.
``connect`` turns both failures into ``NotReady`` naming the owner and the fix, instead of chDB's
opaque "Error initializing EmbeddedServer".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import clickhouse_connect
import psutil
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from cumulus.errors import ConfigError, NotReady

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from services.collector.clickhouse.schema import TableSpec

DSN_FIELD = "clickhouse.dsn"
DSN_FORMS = "chdb:///abs/path, chdb://memory, or http(s)://[user:password@]host[:port][/database]"
_DEFAULT_PORTS = {"http": 8123, "https": 8443}
_OTHER_PATH_RE = re.compile(r"already initialized with path '([^']*)'")

# Dedupe a retried batch in the target table AND in every materialized view it feeds; older
# ClickHouse servers default the second to 0, which would double-count stats after a retry.
INSERT_SETTINGS: Mapping[str, int] = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}


@dataclass(frozen=True)
class ClickHouseTarget:
    """What a DSN names: embedded chDB (a data directory, or memory) or a server over HTTP(S)."""

    scheme: Literal["chdb", "http", "https"]
    path: str | None = None
    """chDB only: absolute data directory; None means in memory."""
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    database: str | None = None

    @property
    def embedded(self) -> bool:
        return self.scheme == "chdb"

    def redacted(self) -> str:
        """The DSN without its password, safe for logs and error messages."""
        if self.embedded:
            return f"chdb://{self.path}" if self.path else "chdb://memory"
        user = f"{self.username}:***@" if self.password else (f"{self.username}@" if self.username else "")
        db = f"/{self.database}" if self.database else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{db}"


def parse_dsn(dsn: str) -> ClickHouseTarget:
    """Validate ``clickhouse.dsn`` without touching any engine; ConfigError names the accepted forms."""
    text = dsn.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise _dsn_error("not a URL")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise _dsn_error(f"not a valid URL ({exc})") from exc
    if parts.query or parts.fragment:
        raise _dsn_error("query strings and fragments are not supported")
    scheme = scheme.lower()
    if scheme == "chdb":
        return _parse_chdb(parts.netloc, parts.path)
    if scheme in _DEFAULT_PORTS:
        return _parse_http(parts, secure=scheme == "https")
    raise _dsn_error(f"unknown scheme {scheme!r}")


def _parse_chdb(netloc: str, path: str) -> ClickHouseTarget:
    if netloc in ("memory", ":memory:") and path in ("", "/"):
        return ClickHouseTarget("chdb")
    if netloc:
        # chdb://data/ch would silently mean "host data, path /ch" to urlsplit.
        raise _dsn_error(f"chDB path must be absolute: write chdb:///{netloc}{path} with three slashes")
    data_dir = str(Path(unquote(path)))
    if data_dir == "/" or not data_dir.startswith("/"):
        raise _dsn_error("chDB needs an absolute data directory, e.g. chdb:///var/lib/cumulus/clickhouse")
    return ClickHouseTarget("chdb", path=data_dir)


def _parse_http(parts: SplitResult, *, secure: bool) -> ClickHouseTarget:
    scheme: Literal["http", "https"] = "https" if secure else "http"
    if not parts.hostname:
        raise _dsn_error("missing host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise _dsn_error("port must be a number between 1 and 65535") from exc
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > 1:
        raise _dsn_error("the path may only name a database (http://host:8123/cumulus)")
    return ClickHouseTarget(
        scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=unquote(segments[0]) if segments else None,
    )


def _dsn_error(problem: str) -> ConfigError:
    # Never echo the DSN itself: it may carry a password.
    return ConfigError(f"{DSN_FIELD}: {problem}", fix=f"use one of {DSN_FORMS}")


def connect(dsn: str, database: str | None = None, *, settings: Mapping[str, Any] | None = None) -> Client:
    """Open a clickhouse-connect client for ``dsn``; ``database`` overrides the DSN's.

    The database must exist before the first query (``ensure_schema`` creates it); open without
    one to create it. Raises ConfigError for a bad DSN, NotReady when the engine can't be reached
    or the chDB directory belongs to another process.
    """
    target = parse_dsn(dsn)
    db = database or target.database
    if target.embedded:
        return _connect_chdb(target, db, dict(settings or {}))
    return _connect_http(target, db, dict(settings or {}))


def _connect_chdb(target: ClickHouseTarget, database: str | None, settings: dict[str, Any]) -> Client:
    try:
        return clickhouse_connect.get_client(
            interface="chdb", path=target.path, database=database, settings=settings
        )
    except DatabaseError as exc:
        raise _chdb_open_error(target, exc) from exc


def _chdb_open_error(target: ClickHouseTarget, exc: Exception) -> NotReady:
    where = target.path or "memory"
    other = _OTHER_PATH_RE.search(str(exc))
    if other:
        return NotReady(
            f"chDB at {where}: this process already runs chDB on {other.group(1)} (one path per process)",
            fix=f"close every client of {other.group(1)} first, or use the same path",
        )
    owner = chdb_owner(target.path) if target.path else None
    if owner:
        return NotReady(
            f"chDB data at {where} is in use by {owner}; only one process may open it",
            fix="stop the other process (cumulus down), or point clickhouse.dsn at a ClickHouse server",
        )
    return NotReady(f"could not open chDB at {where}: {exc}", fix="check the directory is writable")


def chdb_owner(path: str) -> str | None:
    """Describe the live process holding the chDB directory ``path``, or None when none does.

    ClickHouse writes ``<path>/status`` (``PID: n``) while an engine holds the directory; the
    file survives a crash, so the PID only counts while that process is alive.
    """
    try:
        status = (Path(path) / "status").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^PID:\s*(\d+)", status, re.MULTILINE)
    if not match:
        return None
    pid = int(match.group(1))
    try:
        proc = psutil.Process(pid)
        command = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        return None
    return f"process {pid} ({command[:200]})"


def _connect_http(target: ClickHouseTarget, database: str | None, settings: dict[str, Any]) -> Client:
    try:
        return clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username or None,
            password=target.password,
            database=database or "",
            secure=target.scheme == "https",
            settings=settings,
            # A session serializes every query of the client and refuses concurrent ones; we
            # keep no session state (no temporary tables, no SET), so don't open one.
            autogenerate_session_id=False,
        )
    except OperationalError as exc:
        raise NotReady(
            f"ClickHouse at {target.redacted()} is not reachable: {exc}",
            fix="start it (docker compose up clickhouse) or fix clickhouse.dsn",
        ) from exc
    except DatabaseError as exc:
        raise ConfigError(
            f"{DSN_FIELD}: ClickHouse at {target.redacted()} refused the connection: {exc}",
            fix="check the user, password and database in clickhouse.dsn",
        ) from exc


def dedup_token(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    """The insert_deduplication_token of one consumed batch: the same batch always maps to it."""
    return f"{topic}:{partition}:{first_offset}-{last_offset}"


def insert_rows(
    client: Client,
    table: TableSpec,
    rows: Sequence[Sequence[Any]],
    *,
    token: str,
    database: str,
) -> None:
    """Insert one batch of rows (values in ``table.insert_columns`` order).

    Datetimes must be timezone-aware: a naive one is taken as the host's local time and shifted
    on its way into the UTC columns (reads return naive datetimes holding UTC).

    Inserting again with the same ``token`` is a no-op, in the table and in the views it feeds,
    as long as fewer than ``schema.DEDUP_WINDOW`` batches came in between. Raises NotReady when the
    engine is unreachable, so the caller retries the same batch instead of committing offsets.
    """
    try:
        client.insert(
            table.name,
            rows,
            column_names=list(table.insert_columns),
            database=database,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
        )
    except OperationalError as exc:
        raise NotReady(f"insert into {database}.{table.name} failed: {exc}", fix="retry the batch") from exc
