"""The on-disk spool: FIFO order, crash recovery, persisted position, byte limit, segment clean-up."""

import logging
import os
from pathlib import Path

import pytest

from cumulus.kafka.spool import Spool, SpoolRecord, encode_frame


def _record(i: int, size: int = 10) -> SpoolRecord:
    return SpoolRecord(f"topic-{i % 3}", f"wf-{i % 5}".encode(), f"{i:08d}".encode().ljust(size, b"."))


def _fill(spool: Spool, count: int, size: int = 10) -> list[SpoolRecord]:
    records = [_record(i, size) for i in range(count)]
    assert all(spool.append(r) for r in records)
    return records


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    records = _fill(spool, 50)
    assert len(_segments(tmp_path)) > 5
    assert spool.depth == 50 and spool.bytes == sum(len(encode_frame(r)) for r in records)
    assert spool.read(20) + spool.read(100) == records
    assert spool.read(1) == [] and spool.unread == 0


def test_a_record_without_key_and_an_empty_value_round_trip(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    records = [SpoolRecord("t", None, b""), SpoolRecord("t", b"", b"v"), SpoolRecord("tópico", b"k", b"\x00")]
    for record in records:
        spool.append(record)
    spool.close()
    assert Spool(tmp_path, max_bytes=1 << 20).read(10) == records


def test_torn_tail_is_cut_off_and_earlier_records_survive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    records = _fill(spool, 10)
    spool.close()
    segment = _segments(tmp_path)[-1]
    os.truncate(segment, segment.stat().st_size - 3)  # a crash in the middle of the last append

    with caplog.at_level(logging.WARNING):
        reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert "spool.torn_tail" in caplog.text
    assert reopened.depth == 9
    assert reopened.read(100) == records[:9]
    assert reopened.append(_record(99))  # appends continue after the cut, not after the garbage
    assert reopened.read(100) == [_record(99)]


def test_a_corrupt_byte_ends_the_segment_there(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    records = _fill(spool, 5)
    spool.close()
    segment = _segments(tmp_path)[-1]
    data = bytearray(segment.read_bytes())
    data[len(encode_frame(records[0])) * 3 + 12] ^= 0xFF  # inside the fourth record's payload
    segment.write_bytes(bytes(data))
    assert Spool(tmp_path, max_bytes=1 << 20).read(100) == records[:3]


def test_acknowledged_records_are_not_read_again_after_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    records = _fill(spool, 30)
    spool.read(12)
    spool.ack(7)  # read but unacknowledged records (7..11) must come back
    spool.close()

    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert reopened.depth == 23
    assert reopened.bytes == sum(len(encode_frame(r)) for r in records[7:])
    assert reopened.read(100) == records[7:]


def test_unread_hands_the_last_records_out_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    records = _fill(spool, 10)
    spool.read(6)
    spool.ack(2)
    spool.unread_last(3)  # across a segment boundary
    assert spool.unread == 7
    assert spool.read(100) == records[3:]


def test_ack_needs_records_read_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 3)
    spool.read(1)
    with pytest.raises(ValueError, match="only 1 records were read"):
        spool.ack(2)


def test_full_spool_refuses_counts_and_names_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = len(encode_frame(_record(0)))
    spool = Spool(tmp_path, max_bytes=frame * 3, limit_setting="kafka.spool_max_bytes")
    _fill(spool, 3)
    with caplog.at_level(logging.ERROR):
        assert not spool.append(_record(3))
        assert not spool.append(_record(4))
    assert spool.refused == 2 and spool.depth == 3
    assert caplog.text.count("spool.refused") == 1  # rate-limited, not one line per record
    assert str(tmp_path) in caplog.text and "kafka.spool_max_bytes" in caplog.text
    spool.read(1)
    spool.ack(1)
    assert spool.append(_record(5))  # room again once records are acknowledged


def test_fully_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    _fill(spool, 20)
    before = _segments(tmp_path)
    assert len(before) >= 5
    spool.read(9)
    spool.ack(9)
    after = _segments(tmp_path)
    assert before[0] not in after and after == before[len(before) - len(after) :]
    spool.read(100)
    spool.ack(11)
    assert spool.depth == 0 and spool.bytes == 0
    assert len(_segments(tmp_path)) == 1 and _segments(tmp_path)[0].stat().st_size == 0
    spool.close()
    assert Spool(tmp_path, max_bytes=1 << 20).depth == 0


def test_a_stale_segment_left_by_a_crash_is_removed_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    records = _fill(spool, 10)
    first = _segments(tmp_path)[0]
    stale = first.read_bytes()
    spool.read(4)
    spool.ack(4)
    spool.close()
    assert not first.exists()
    first.write_bytes(stale)  # position was saved, the crash came before the delete
    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    assert not first.exists()
    assert reopened.read(100) == records[4:]


def test_append_costs_microseconds(tmp_path: Path) -> None:
    import time

    spool = Spool(tmp_path, max_bytes=1 << 30)
    record = _record(0, size=600)
    started = time.perf_counter()
    for _ in range(5000):
        spool.append(record)
    per_append_us = (time.perf_counter() - started) / 5000 * 1e6
    assert per_append_us < 200, per_append_us


def test_spooled_events_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=200)
    _fill(spool, 30)  # several segments
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    segments = _segments(tmp_path / "spool")
    assert len(segments) > 1 and all(p.stat().st_mode & 0o777 == 0o600 for p in segments)
