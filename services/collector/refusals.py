"""Permanent insert refusals: which rows ClickHouse will never take, found without losing the rest.

An insert can fail for two kinds of reasons. *Transient*: the server is unreachable, out of memory
or disk, overloaded (``NotReady``): the same batch is retried until it goes in, never skipped.
*Permanent*: the data itself is refused (a value the column's type cannot hold, a string the
server cannot parse, a value the client cannot even encode) (``RowsRefused``): retrying forever
would block the partition until Kafka's retention deletes it. Such a batch is split in halves,
each inserted with a token derived from the batch's own, until the refused rows stand alone; they
are dead-lettered and the rest is stored.

Exactly once still holds: the split is a pure function of the batch, so a collector that takes
the partition over mid-split re-reads the same records, splits them the same way and sends the
same tokens, and ClickHouse drops the halves it already has (``insert_deduplication_token``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cumulus.errors import CumulusError

PERMANENT_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        1001,  # STD_EXCEPTION (a value the engine's parser throws on)
    }
)
"""ClickHouse error codes that name the data, not the server's state."""
_CODE = re.compile(r"Code: (\d+)")
ENCODING_ERRORS = (TypeError, ValueError, OverflowError)
"""What the client raises for a value it cannot encode for its column (UnicodeError is a ValueError)."""


class RowsRefused(CumulusError):
    """ClickHouse (or the client encoding for it) will never accept these rows as they are."""


def is_permanent(exc: BaseException) -> bool:
    """Whether an insert's exception names the data (see PERMANENT_CODES), never the server."""
    if isinstance(exc, ENCODING_ERRORS):
        return True  # the client could not encode a value for its column
    match = _CODE.search(str(exc))
    return match is not None and int(match.group(1)) in PERMANENT_CODES


Insert = Callable[[Sequence[Any], str], Awaitable[bool]]
"""Insert rows with a dedup token; True when stored, False when out of time (nothing is known)."""


async def insert_isolating_refusals(
    insert: Insert, rows: Sequence[Any], token: str
) -> tuple[bool, list[tuple[int, str]]]:
    """Insert ``rows``; returns (finished, [(index of a refused row, why)]).

    ``finished`` False: out of time before every row was decided; nothing may be committed.
    """
    try:
        return await insert(rows, token), []
    except RowsRefused as exc:
        if len(rows) == 1:
            return True, [(0, exc.message)]
    middle = len(rows) // 2
    refused: list[tuple[int, str]] = []
    for offset, part, suffix in ((0, rows[:middle], "a"), (middle, rows[middle:], "b")):
        finished, found = await insert_isolating_refusals(insert, part, f"{token}/{suffix}")
        if not finished:
            return False, []
        refused.extend((offset + index, why) for index, why in found)
    return True, refused
