"""Rows ClickHouse refuses for good are isolated by splitting; the rest is stored, exactly once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from services.collector.refusals import RowsRefused, insert_isolating_refusals, is_permanent


class Table:
    """A ClickHouse table stand-in: refuses any batch holding a poison row; dedups by token."""

    def __init__(self, out_of_time_after: int | None = None) -> None:
        self.rows: list[str] = []
        self.tokens: set[str] = set()
        self.calls = 0
        self.out_of_time_after = out_of_time_after

    async def insert(self, rows: Sequence[str], token: str) -> bool:
        self.calls += 1
        if self.out_of_time_after is not None and self.calls > self.out_of_time_after:
            return False
        if any(r.startswith("poison") for r in rows):
            raise RowsRefused(f"Code: 53. TYPE_MISMATCH in {[r for r in rows if r.startswith('poison')]}")
        if token not in self.tokens:
            self.tokens.add(token)
            self.rows.extend(rows)
        return True


async def test_a_clean_batch_is_one_insert() -> None:
    table = Table()
    assert await insert_isolating_refusals(table.insert, ["a", "b", "c"], "t") == (True, [])
    assert table.rows == ["a", "b", "c"] and table.calls == 1


@pytest.mark.parametrize("poisoned", [[0], [6], [2, 3], [0, 7], list(range(8))])
async def test_refused_rows_are_found_and_every_other_row_stored_once(poisoned: list[int]) -> None:
    rows = [f"poison-{i}" if i in poisoned else f"row-{i}" for i in range(8)]
    table = Table()
    finished, refused = await insert_isolating_refusals(table.insert, rows, "t")
    assert finished and [i for i, _ in refused] == poisoned
    assert all("TYPE_MISMATCH" in why for _, why in refused)
    assert sorted(table.rows) == sorted(r for r in rows if r.startswith("row"))
    # A collector taking over mid-way replays the same split with the same tokens: nothing twice.
    again = await insert_isolating_refusals(table.insert, rows, "t")
    assert again == (finished, refused)
    assert sorted(table.rows) == sorted(r for r in rows if r.startswith("row"))


async def test_out_of_time_mid_split_decides_nothing() -> None:
    table = Table(out_of_time_after=2)
    assert await insert_isolating_refusals(table.insert, ["poison", "a", "b", "c"], "t") == (False, [])


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (DatabaseError("Code: 53. DB::Exception: Type mismatch"), True),
        (DatabaseError("Code: 241. DB::Exception: Memory limit exceeded"), False),
        (OperationalError("connection refused"), False),
        (TypeError("cannot encode str as UInt32"), True),
        (OverflowError("int too big"), True),
    ],
)
def test_permanent_means_the_data_not_the_server(exc: Exception, permanent: bool) -> None:
    assert is_permanent(exc) is permanent
