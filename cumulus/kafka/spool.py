"""A bounded, append-only, crash-safe on-disk FIFO of Kafka records: the publisher's outage buffer.

Layout of the directory::

    00000000000000000001.seg   segment files, appended to in order; the last one is being written
    position                   "<segment> <offset>": the first record not yet acknowledged

A record is framed ``length (u32) | crc32 (u32) | topic length (u16) | key length (u32, 0xFFFFFFFF:
none) | topic | key | value``. Open checks every unacknowledged frame, so a write torn by a crash is
cut off without losing the records before it.

Durability trade-off: an append is one ``write(2)``, never fsynced on its own (that would cost
milliseconds), so a crash of the process loses nothing (the kernel has the bytes) while a crash of the
machine may lose what was written since the last segment roll (fsynced, off-thread) or ``close()``.
The position is replaced atomically (rename) on every ``ack()`` but not fsynced either: after a
machine crash a few records may be delivered twice, which is why consumers dedupe on ``event_id``.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

from cumulus.logs import get_logger

_FRAME = struct.Struct(">II")
_FIELDS = struct.Struct(">HI")
_NO_KEY = 0xFFFFFFFF
_SUFFIX = ".seg"
_FULL_LOG_INTERVAL_S = 10.0
_PRIVATE = 0o600
"""Spooled events hold raw prompts and answers: readable by the service's own user only."""

log = get_logger("spool")


class SpoolRecord(NamedTuple):
    """One Kafka record waiting to be sent."""

    topic: str
    key: bytes | None
    value: bytes


def encode_frame(record: SpoolRecord) -> bytes:
    """The record framed for a segment file (length, CRC32, payload)."""
    topic = record.topic.encode("utf-8")
    key = record.key or b""
    key_len = _NO_KEY if record.key is None else len(key)
    payload = b"".join((_FIELDS.pack(len(topic), key_len), topic, key, record.value))
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_payload(payload: bytes) -> SpoolRecord:
    topic_len, key_len = _FIELDS.unpack_from(payload)
    start = _FIELDS.size + topic_len
    topic = payload[_FIELDS.size : start].decode("utf-8")
    if key_len == _NO_KEY:
        return SpoolRecord(topic, None, payload[start:])
    return SpoolRecord(topic, payload[start : start + key_len], payload[start + key_len :])


def _valid_prefix(data: bytes, start: int) -> tuple[int, int]:
    """Scan frames from ``start``: (offset just past the last intact frame, number of intact frames)."""
    offset, count = start, 0
    while offset + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, offset)
        end = offset + _FRAME.size + length
        if end > len(data) or zlib.crc32(data[offset + _FRAME.size : end]) != crc:
            break
        offset, count = end, count + 1
    return offset, count


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        log.error("spool.fsync_failed", error=str(exc), risk="records lost if the machine crashes")
    finally:
        os.close(fd)


class _Segment:
    def __init__(self, directory: Path, seq: int, size: int = 0) -> None:
        self.seq = seq
        self.path = directory / f"{seq:020d}{_SUFFIX}"
        self.size = size


class Spool:
    """A FIFO of :class:`SpoolRecord` in segment files under ``directory``, bounded by ``max_bytes``.

    ``read()`` hands out records in order without removing them; ``ack(n)`` removes the first ``n``
    read records for good (deleting segments that are fully acknowledged); ``unread_last(n)`` hands
    the last ``n`` read out again. Not thread-safe: one owner, one event loop.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int = 4 * 1024 * 1024,
        limit_setting: str = "max_bytes",
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.limit_setting = limit_setting
        """The setting an operator raises when the spool is full (named in the error log)."""
        self.refused = 0
        """Records refused because the spool was full or the disk failed."""
        self._depth = 0
        self._bytes = 0
        self._committed = 0  # offset of the first unacknowledged record in self._segments[0]
        self._read: deque[tuple[int, int, int]] = deque()  # (segment seq, start, frame size), unacked
        self._last_full_log = -_FULL_LOG_INTERVAL_S
        self._syncing: list[threading.Thread] = []  # fsyncs of rolled segments, off the caller's thread
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._segments = self._recover()
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _PRIVATE)
        self._cursor = (0, self._committed)  # (index into self._segments, offset) of the next read

    @property
    def depth(self) -> int:
        """Records appended and not yet acknowledged (read or not)."""
        return self._depth

    @property
    def bytes(self) -> int:
        """Bytes of the unacknowledged records, framing included (what ``max_bytes`` limits)."""
        return self._bytes

    @property
    def unread(self) -> int:
        """Records not handed out by ``read()`` yet."""
        return self._depth - len(self._read)

    def append(self, record: SpoolRecord) -> bool:
        """Add a record at the end; False (counted in ``refused``, logged) when full or on a disk error."""
        frame = encode_frame(record)
        if self._bytes + len(frame) > self.max_bytes:
            return self._refuse(f"full ({self._bytes} of {self.max_bytes} bytes used)")
        try:
            if self._segments[-1].size and self._segments[-1].size + len(frame) > self.segment_bytes:
                self._roll()
            os.write(self._fd, frame)
        except OSError as exc:
            active = self._segments[-1]
            with suppress(OSError):  # cut off any part that made it, or later frames follow garbage
                os.truncate(active.path, active.size)
            return self._refuse(f"writing {active.path} failed: {exc}")
        active = self._segments[-1]
        active.size += len(frame)
        self._depth += 1
        self._bytes += len(frame)
        return True

    def read(self, max_records: int) -> list[SpoolRecord]:
        """Hand out up to ``max_records`` records after those already read, oldest first."""
        records: list[SpoolRecord] = []
        index, offset = self._cursor
        while len(records) < max_records:
            segment = self._segments[index]
            if offset >= segment.size:
                if index + 1 == len(self._segments):
                    break
                index, offset = index + 1, 0
                continue
            with segment.path.open("rb") as handle:
                handle.seek(offset)
                while len(records) < max_records and offset < segment.size:
                    length, _crc = _FRAME.unpack(handle.read(_FRAME.size))
                    records.append(_decode_payload(handle.read(length)))
                    self._read.append((segment.seq, offset, _FRAME.size + length))
                    offset += _FRAME.size + length
        self._cursor = (index, offset)
        return records

    def unread_last(self, count: int) -> None:
        """Give back the last ``count`` records read, so the next ``read()`` hands them out again."""
        for _ in range(count):
            seq, start, _size = self._read.pop()
            self._cursor = (self._index_of(seq), start)

    def ack(self, count: int) -> None:
        """Remove the first ``count`` read records for good; persists the position."""
        if count > len(self._read):
            raise ValueError(f"ack({count}) but only {len(self._read)} records were read")
        if count <= 0:
            return
        for _ in range(count):
            seq, start, size = self._read.popleft()
            self._bytes -= size
            self._depth -= 1
        while self._segments[0].seq != seq:  # records before are acked: earlier segments are done
            self._drop_first_segment()
        self._committed = start + size
        if self._depth == 0 and self._segments[-1].size:
            with suppress(OSError):  # start empty so the fully acknowledged files can go
                self._roll()
            while len(self._segments) > 1:
                self._drop_first_segment()
        self._write_position()

    def close(self) -> None:
        """Flush the active segment to disk and persist the position; the spool is unusable after."""
        if self._fd < 0:
            return
        _sync_and_close(self._fd)
        self._fd = -1
        for thread in self._syncing:
            thread.join()
        self._write_position()

    def _refuse(self, why: str) -> bool:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_full_log >= _FULL_LOG_INTERVAL_S:
            self._last_full_log = now
            fix = f"raise {self.limit_setting} or bring Kafka back; refused records are lost"
            log.error("spool.refused", spool_dir=str(self.directory), why=why, total=self.refused, fix=fix)
        return False

    def _roll(self) -> None:
        segment = _Segment(self.directory, self._segments[-1].seq + 1)
        # May fail: nothing has changed yet.
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _PRIVATE)
        # fsync can take tens of milliseconds; append() must stay in microseconds, so a thread does it.
        syncing = threading.Thread(target=_sync_and_close, args=(self._fd,), name="spool-fsync", daemon=True)
        syncing.start()
        self._syncing = [thread for thread in self._syncing if thread.is_alive()] + [syncing]
        self._fd = fd
        self._segments.append(segment)

    def _drop_first_segment(self) -> None:
        # The position moves to the next segment first, so a crash in between leaves a stale file
        # that the next open deletes, never a position inside a deleted file.
        dropped = self._segments.pop(0)
        self._committed = 0
        self._write_position()
        dropped.path.unlink(missing_ok=True)
        index, offset = self._cursor
        self._cursor = (max(index - 1, 0), offset if index else 0)

    def _index_of(self, seq: int) -> int:
        return next(i for i, segment in enumerate(self._segments) if segment.seq == seq)

    def _write_position(self) -> None:
        tmp = self.directory / "position.tmp"
        try:
            tmp.write_text(f"{self._segments[0].seq} {self._committed}\n")
            os.replace(tmp, self.directory / "position")
        except OSError as exc:  # the next write may succeed; until then a restart resends a little
            log.error("spool.position_not_saved", spool_dir=str(self.directory), error=str(exc))

    def _recover(self) -> list[_Segment]:
        """Load the segments after the saved position, cutting off torn or corrupt tails."""
        seqs = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        start_seq, start_offset = self._read_position()
        segments: list[_Segment] = []
        for seq in seqs:
            segment = _Segment(self.directory, seq)
            if seq < start_seq:
                segment.path.unlink()  # fully acknowledged before a crash could delete it
                continue
            data = segment.path.read_bytes()
            first = start_offset if seq == start_seq else 0
            if not segments:
                self._committed = min(first, len(data))
            valid, count = _valid_prefix(data, self._committed if not segments else 0)
            if valid < len(data):
                cut = len(data) - valid
                log.warning("spool.torn_tail", spool_dir=str(self.directory), segment=seq, cut_bytes=cut)
                os.truncate(segment.path, valid)
            segment.size = valid
            self._depth += count
            self._bytes += valid - (self._committed if not segments else 0)
            segments.append(segment)
        if not segments:
            segments.append(_Segment(self.directory, max([start_seq, *seqs]) + 1))
            self._committed = 0
        if self._depth:
            log.info("spool.opened", spool_dir=str(self.directory), depth=self._depth, bytes=self._bytes)
        return segments

    def _read_position(self) -> tuple[int, int]:
        path = self.directory / "position"
        try:
            seq, offset = (int(part) for part in path.read_text().split())
        except FileNotFoundError:
            return 0, 0
        except ValueError:
            log.warning("spool.position_unreadable", spool_dir=str(self.directory), action="replay all")
            return 0, 0
        return seq, offset
