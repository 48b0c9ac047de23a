"""One training job as a child process (``python -m services.trainer.job``), watched to its end.

The child prints JSON progress lines on stdout and writes its outcome to ``result.json`` in the job
directory. The trainer relays progress into the job's ``JobStatus`` (what ``GET /status`` shows)
and to a callback (the TRAINING AdapterEvents); on a timeout or when the trainer stops it sends
SIGTERM, and the job saves a checkpoint at its next step and exits. However the watch ends,
cancellation included, the process and its relay end with it: a relay left behind would keep
writing a finished job's progress where ``GET /status`` reads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cumulus.logs import get_logger
from services.trainer.job import EXIT_INTERRUPTED, RESULT, JobSpec

log = get_logger("trainer")
_REPO = Path(__file__).resolve().parents[2]
_KILL_AFTER_S = 60.0
JOB_MODULE = "services.trainer.job"
"""What the child runs (``python -m``); tests put a scripted job in its place."""


@dataclass
class JobStatus:
    """What ``GET /status`` shows about the running job."""

    adapter_id: str
    candidate_id: str
    workflow: str
    started_at: float = field(default_factory=time.time)
    phase: str = "starting"
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    updated_at: float = field(default_factory=time.time)
    """When the job last reported progress: a reader can tell a live job from a stuck one."""


async def run_job(
    spec: JobSpec,
    job: JobStatus,
    stopping: asyncio.Event,
    timeout_s: float,
    progressed: Callable[[JobStatus], None],
) -> dict[str, Any] | None:
    """Run ``spec``'s job process; its outcome (FAILED when it crashed or timed out), None when stopping."""
    result_path = Path(spec.job_dir) / RESULT
    result_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        JOB_MODULE,
        str(Path(spec.job_dir) / "spec.json"),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    relay = asyncio.create_task(_relay(child, job, progressed))
    stop = asyncio.create_task(stopping.wait())
    try:
        done, _ = await asyncio.wait({relay, stop}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _end(child, relay, stop)
    if stop in done:
        log.info("job.stopped", workflow=spec.workflow, adapter=spec.adapter_id, reason="trainer stopping")
        return None
    code = await child.wait()
    if not done:
        return {"status": "FAILED", "error": f"timed out after {timeout_s:.0f}s"}
    if code == 0 and result_path.is_file():
        outcome: dict[str, Any] = json.loads(result_path.read_text())
        return outcome
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    hint = " (interrupted)" if code == EXIT_INTERRUPTED else ""
    return {"status": "FAILED", "error": f"the training process {how}{hint}; see the trainer log"}


async def _relay(child: Any, job: JobStatus, progressed: Callable[[JobStatus], None]) -> None:
    """Copy the child's progress lines into ``job`` until its stdout closes, then reap it."""
    assert child.stdout is not None
    async for line in child.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("event") != "progress":
            continue
        job.updated_at = time.time()
        job.progress, job.phase = float(message["progress"]), message.get("phase", job.phase)
        job.step = message.get("step", job.step)
        job.total_steps = message.get("total_steps", job.total_steps)
        job.loss = message.get("loss", job.loss)
        progressed(job)
    await child.wait()


async def _end(child: Any, relay: asyncio.Task[None], stop: asyncio.Task[bool]) -> None:
    """Stop a job process that is still running, then its relay and the stop watcher."""
    stop.cancel()
    if child.returncode is None and not relay.done():
        child.terminate()  # the job saves a checkpoint at its next step and exits
        try:
            await asyncio.wait_for(asyncio.shield(child.wait()), _KILL_AFTER_S)
        except TimeoutError:
            child.kill()
            await child.wait()
    relay.cancel()
    with suppress(asyncio.CancelledError):
        await relay
