"""Batch cutting: size and time triggers, and the exact re-forming of a pending batch."""

from __future__ import annotations

from dataclasses import dataclass

from services.collector.batching import PartitionBuffer, Replay, parse_pending_note, pending_note


@dataclass
class Record:
    offset: int


def records(first: int, last: int) -> list[Record]:
    return [Record(o) for o in range(first, last + 1)]


def test_pending_note_round_trip() -> None:
    assert parse_pending_note(pending_note(1234)) == 1234
    assert parse_pending_note("") is None and parse_pending_note(None) is None
    assert parse_pending_note("cumulus.pending-last=x") is None and parse_pending_note("other") is None


def test_nothing_is_cut_before_the_partition_is_ready() -> None:
    buffer = PartitionBuffer()
    buffer.add(records(0, 5000), now=0.0)
    assert not buffer.due(now=100.0, batch_rows=1000, max_wait_s=1.0)


def test_size_and_time_triggers() -> None:
    buffer = PartitionBuffer(ready=True)
    buffer.add(records(0, 9), now=10.0)
    assert not buffer.due(now=10.5, batch_rows=1000, max_wait_s=1.0)
    assert buffer.due(now=11.0, batch_rows=1000, max_wait_s=1.0)
    buffer.add(records(10, 1009), now=10.6)
    assert buffer.due(now=10.6, batch_rows=1000, max_wait_s=1.0)
    batch = buffer.cut(max_rows=600)
    assert [batch[0].offset, batch[-1].offset] == [0, 599]
    assert buffer.records[0].offset == 600
    # What is left waited since 10.0 already: its time trigger is not reset.
    assert buffer.due(now=11.0, batch_rows=1000, max_wait_s=1.0)


def test_a_pending_batch_is_re_formed_exactly() -> None:
    buffer = PartitionBuffer(ready=True, replay=Replay(first=100, last=349))
    buffer.add(records(100, 300), now=0.0)
    # Neither size nor time cuts it early: it must end at 349, as the first attempt did.
    assert not buffer.due(now=60.0, batch_rows=10, max_wait_s=1.0)
    buffer.add(records(301, 1000), now=0.1)
    assert buffer.check_replay() is None
    assert buffer.due(now=0.1, batch_rows=10_000, max_wait_s=1.0)
    batch = buffer.cut(max_rows=50)  # the cap does not apply to the replayed batch either
    assert [batch[0].offset, batch[-1].offset, len(batch)] == [100, 349, 250]
    assert buffer.replay is None and buffer.records[0].offset == 350


def test_a_replay_that_no_longer_matches_what_was_read_is_dropped() -> None:
    buffer = PartitionBuffer(ready=True, replay=Replay(first=100, last=349))
    buffer.add(records(120, 400), now=0.0)  # 100-119 are gone (retention)
    assert "not the pending batch's first" in (buffer.check_replay() or "")
    assert buffer.replay is None and buffer.due(now=0.0, batch_rows=100, max_wait_s=1.0)
