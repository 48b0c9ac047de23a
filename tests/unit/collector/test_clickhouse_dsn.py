"""DSN parsing and error translation; nothing here starts an engine."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from cumulus.errors import ConfigError, NotReady
from services.collector.clickhouse import ClickHouseTarget, chdb_owner, connect, dedup_token, parse_dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("chdb:///var/lib/cumulus/clickhouse", ClickHouseTarget("chdb", path="/var/lib/cumulus/clickhouse")),
        ("chdb:///data/ch/", ClickHouseTarget("chdb", path="/data/ch")),
        ("chdb:///data/with%20space", ClickHouseTarget("chdb", path="/data/with space")),
        ("chdb://memory", ClickHouseTarget("chdb")),
        ("chdb://:memory:", ClickHouseTarget("chdb")),
        ("http://clickhouse:8123", ClickHouseTarget("http", host="clickhouse", port=8123)),
        ("http://clickhouse", ClickHouseTarget("http", host="clickhouse", port=8123)),
        ("https://ch.example.com", ClickHouseTarget("https", host="ch.example.com", port=8443)),
        (
            "http://cumulus:s%40cret@clickhouse:8124/an",
            ClickHouseTarget(
                "http", host="clickhouse", port=8124, username="cumulus", password="s@cret", database="an"
            ),
        ),
        ("  HTTP://ch:9123/  ", ClickHouseTarget("http", host="ch", port=9123)),
    ],
)
def test_accepted_forms(dsn: str, expected: ClickHouseTarget) -> None:
    assert parse_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("", "not a URL"),
        ("/var/lib/ch", "not a URL"),
        ("clickhouse:8123", "not a URL"),
        ("tcp://clickhouse:9000", "unknown scheme 'tcp'"),
        ("chdb://relative/path", "write chdb:///relative/path with three slashes"),
        ("chdb:///", "absolute data directory"),
        ("http://", "missing host"),
        ("http://ch:notaport", "port must be a number"),
        ("http://ch:8123/db/extra", "may only name a database"),
        ("http://ch:8123/?database=x", "query strings"),
    ],
)
def test_refused_forms_name_the_field_and_the_accepted_forms(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dsn(dsn)
    assert info.value.message.startswith("clickhouse.dsn: ")
    assert problem in info.value.message
    assert "chdb:///abs/path" in (info.value.fix or "")
    assert "http(s)://" in (info.value.fix or "")


def test_errors_and_repr_never_show_the_password() -> None:
    target = parse_dsn("http://u:hunter2@ch:8123/db")
    assert "hunter2" not in repr(target)
    assert target.redacted() == "http://u:***@ch:8123/db"
    with pytest.raises(ConfigError) as info:
        parse_dsn("http://u:hunter2@ch:8123/db/x")
    assert "hunter2" not in str(info.value)


def test_redacted_forms() -> None:
    assert parse_dsn("chdb:///d").redacted() == "chdb:///d"
    assert parse_dsn("chdb://memory").redacted() == "chdb://memory"
    assert parse_dsn("http://ch").redacted() == "http://ch:8123"
    assert parse_dsn("http://u@ch").redacted() == "http://u@ch:8123"


def test_unreachable_server_is_not_ready() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, then close before connecting
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NotReady) as info:
        connect(f"http://u:hunter2@127.0.0.1:{port}")
    assert f"127.0.0.1:{port} is not reachable" in info.value.message
    assert "hunter2" not in str(info.value)


def test_bad_dsn_fails_before_any_engine() -> None:
    with pytest.raises(ConfigError):
        connect("chdb://relative")


def test_chdb_owner_reads_the_status_file(tmp_path: Path) -> None:
    (tmp_path / "status").write_text(f"PID: {os.getpid()}\nStarted at: 2026-01-01 00:00:00\nRevision: 1\n")
    owner = chdb_owner(str(tmp_path))
    assert owner is not None and owner.startswith(f"process {os.getpid()} (")


def test_chdb_owner_ignores_stale_and_missing_status(tmp_path: Path) -> None:
    assert chdb_owner(str(tmp_path)) is None
    (tmp_path / "status").write_text("PID: 999999999\n")  # beyond pid_max
    assert chdb_owner(str(tmp_path)) is None


def test_dedup_token_is_stable_per_batch() -> None:
    assert dedup_token("cumulus.inference.v1", 2, 100, 1099) == "cumulus.inference.v1:2:100-1099"
