"""The collector's ClickHouse: one writer and one reader, each on a thread of its own.

clickhouse-connect is synchronous and chDB runs inside this process, so every call would block
the event loop (health checks, the read API, Kafka heartbeats). Each client is therefore
confined to a single-thread executor: inserts stay strictly sequential (one batch at a time, in
commit order) and a slow dashboard query never delays an insert, nor the other way round.
chDB shares one engine between the two clients of the same path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from prometheus_client import Histogram

from cumulus.errors import NotReady
from services.collector.clickhouse import connect, ensure_schema, insert_rows
from services.collector.clickhouse.schema import TableSpec
from services.collector.refusals import ENCODING_ERRORS, RowsRefused, is_permanent

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

INSERT_SECONDS = Histogram(
    "collector_insert_seconds",
    "Time one batch insert into ClickHouse took",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class ClickHouseStore:
    """Async facade over a writer and a reader client of one ClickHouse database."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="ch-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="ch-reader")
        self._writer: Client | None = None
        self._reader: Client | None = None

    async def open(self) -> None:
        """Connect both clients and create whatever part of the schema is missing."""
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._write_pool, self._open_writer)
        self._reader = await loop.run_in_executor(self._read_pool, lambda: connect(self.dsn, self.database))

    def _open_writer(self) -> Client:
        bootstrap = connect(self.dsn)  # without a database: it may not exist yet
        try:
            ensure_schema(bootstrap, self.database)
        finally:
            bootstrap.close()
        return connect(self.dsn, self.database)

    async def insert(self, table: TableSpec, rows: Sequence[Sequence[Any]], token: str) -> None:
        """Insert one batch; a retry with the same ``token`` is a no-op.

        Raises NotReady when worth retrying, RowsRefused when the rows themselves are refused."""
        writer = self._require(self._writer)
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(
            self._write_pool, self._insert, writer, table, rows, token
        )
        INSERT_SECONDS.labels(table.name).observe(time.monotonic() - started)

    def _insert(self, writer: Client, table: TableSpec, rows: Sequence[Sequence[Any]], token: str) -> None:
        try:
            insert_rows(writer, table, rows, token=token, database=self.database)
        except (ClickHouseError, *ENCODING_ERRORS) as exc:
            # A refusal of the data itself is permanent: the caller isolates the rows at fault
            # (services/collector/refusals.py). Anything else (a full disk, a merge storm, and the
            # connection failures insert_rows raises as NotReady) is retried, never skipped.
            where = f"{self.database}.{table.name}"
            if is_permanent(exc):
                raise RowsRefused(f"{where} refused the rows: {exc}") from exc
            raise NotReady(f"insert into {where} refused: {exc}") from exc

    async def execute(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that changes data (an erasure's ``ALTER TABLE ... DELETE``) on the
        writer thread, in order with the inserts."""
        writer = self._require(self._writer)

        def run() -> None:
            try:
                writer.command(sql, parameters=parameters or {})
            except ClickHouseError as exc:
                raise NotReady(f"ClickHouse statement failed: {exc}") from exc

        await asyncio.get_running_loop().run_in_executor(self._write_pool, run)

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query on the reader thread; rows as dicts keyed by column name."""
        reader = self._require(self._reader)

        def run() -> list[dict[str, Any]]:
            try:
                result = reader.query(sql, parameters=parameters or {})
            except ClickHouseError as exc:
                raise NotReady(f"ClickHouse query failed: {exc}") from exc
            names = result.column_names
            return [dict(zip(names, row, strict=True)) for row in result.result_rows]

        return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)

    async def ping(self) -> str | None:
        """Readiness check: None when a trivial query answers."""
        if self._reader is None:
            return "not connected yet"
        rows = await self.query("SELECT 1 AS ok")
        return None if rows == [{"ok": 1}] else f"unexpected answer {rows!r}"

    async def close(self) -> None:
        """Close both clients on their own threads (which shuts chDB down) and stop the threads."""
        loop = asyncio.get_running_loop()
        for pool, client in ((self._write_pool, self._writer), (self._read_pool, self._reader)):
            if client is not None:
                await loop.run_in_executor(pool, client.close)
            pool.shutdown(wait=True)
        self._writer = self._reader = None

    @staticmethod
    def _require(client: Client | None) -> Client:
        if client is None:
            raise NotReady("ClickHouse is not connected yet", fix="wait for /readyz")
        return client
