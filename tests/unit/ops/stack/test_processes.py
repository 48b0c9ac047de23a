import sys
import time
from pathlib import Path

import psutil

from ops.stack.processes import ProcessTable

# A parent that spawns a child which ignores SIGTERM: stop() must still leave nothing behind.
STUBBORN_TREE = """
import signal, subprocess, sys, time
IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
child = subprocess.Popen([sys.executable, "-c", IGNORE_TERM + "print('child', flush=True); time.sleep(600)"])
print("parent", child.pid, flush=True)
time.sleep(600)
"""


def _wait_for_log(table: ProcessTable, name: str, needle: str) -> str:
    """The first line of the log that starts with needle (the header line echoes the argv)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = table.log_path(name).read_text() if table.log_path(name).exists() else ""
        lines = [line for line in text.splitlines() if line.startswith(needle)]
        if lines:
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {name}.log")


def test_start_records_pid_and_log(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.start(
        "echo", [sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(30)"]
    )
    try:
        assert table.alive("echo") and table.get("echo") == record
        assert "hello" in _wait_for_log(table, "echo", "hello")
    finally:
        assert table.stop("echo", grace_s=5)
    assert not table.alive("echo") and table.get("echo") is None


def test_stop_kills_the_whole_tree_even_when_a_child_ignores_sigterm(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    table.start("tree", [sys.executable, "-c", STUBBORN_TREE])
    child_pid = int(_wait_for_log(table, "tree", "parent ").split()[1])
    _wait_for_log(table, "tree", "child")  # the child has installed its SIGTERM handler
    assert psutil.pid_exists(child_pid)
    table.stop("tree", grace_s=1)
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


def test_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.start("short", [sys.executable, "-c", "pass"])
    psutil.Process(record.pid).wait(10)
    assert not table.alive("short")
    assert table.stop("short") is False  # nothing running; the stale record is just removed
    assert table.get("short") is None


def test_torn_record_file_is_ignored(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    table.run_dir.mkdir(parents=True)
    (table.run_dir / "broken.json").write_text("{not json")
    assert table.records() == {}
