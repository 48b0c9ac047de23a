"""Background processes with pid and log files under the state dir, stopped without strays.

Each process starts in its own session (so its process group holds everything it spawns, e.g.
tritonserver and its Python stubs) and is recorded in ``run/<name>.json`` with its pid and
start time; the start time guards against signalling an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from cumulus.errors import StackError


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    argv: list[str]
    log_file: str

    def process(self) -> psutil.Process | None:
        """The live process this record describes, or None if it is gone (or the pid was reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.NoSuchProcess:
            return None


class ProcessTable:
    """The processes one stack started, as files under ``<state_dir>/run`` and ``<state_dir>/logs``."""

    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _record_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def records(self) -> dict[str, ProcessRecord]:
        out = {}
        for path in sorted(self.run_dir.glob("*.json")) if self.run_dir.exists() else []:
            try:
                out[path.stem] = ProcessRecord(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                path.unlink(missing_ok=True)  # a torn write from a crashed `up`; nothing to stop
        return out

    def get(self, name: str) -> ProcessRecord | None:
        return self.records().get(name)

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> ProcessRecord:
        """Start argv in the background, appending its output to logs/<name>.log."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(name)
        with log_path.open("ab") as log:
            log.write(
                f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode()
            )
            log.flush()
            pid = _spawn_detached(list(argv), log.fileno(), env, cwd)
        record = ProcessRecord(name, pid, psutil.Process(pid).create_time(), list(argv), str(log_path))
        tmp = self._record_path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(self._record_path(name))
        return record

    def alive(self, name: str) -> bool:
        record = self.get(name)
        return record is not None and record.process() is not None

    def stop(self, name: str, grace_s: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL whatever remains after grace_s. True if something ran."""
        record = self.get(name)
        if record is None:
            return False
        proc = record.process()
        ran = proc is not None
        if proc is not None:
            _terminate_tree(proc, grace_s)
        self._record_path(name).unlink(missing_ok=True)
        return ran

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_path(name)
        if not path.exists():
            return f"(no log file at {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _spawn_detached(argv: list[str], log_fd: int, env: Mapping[str, str] | None, cwd: Path | None) -> int:
    """Start argv in a new session with stdout/stderr to log_fd and stdin from /dev/null.

    posix_spawn rather than subprocess.Popen: the process outlives this one by design, and a
    Popen object would warn (ResourceWarning) about a child it never waited for.
    """
    argv = list(argv)
    if cwd is not None:
        # posix_spawn has no chdir action before Python 3.13: let a shell change directory.
        argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *argv]
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        return os.posix_spawnp(
            argv[0],
            argv,
            dict(env) if env is not None else dict(os.environ),
            setsid=True,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
        )
    except OSError as exc:
        raise StackError(f"could not start {argv[0]}: {exc}") from exc
    finally:
        os.close(devnull)


def _terminate_tree(proc: psutil.Process, grace_s: float) -> None:
    # Collect descendants first: once the parent dies they are re-parented and harder to find.
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    for member in family:
        try:
            member.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    if alive:
        _signal_group(proc.pid, signal.SIGKILL)
        for member in alive:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=5.0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
