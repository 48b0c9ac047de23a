"""A job's process ends with its watch, so ``GET /status`` never shows another job's progress."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.trainer import process
from services.trainer.job import JobSpec
from services.trainer.process import JobStatus, run_job


@pytest.fixture(autouse=True)
def scripted_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "JOB_MODULE", "tests.unit.trainer.scripted_job")


def job_spec(tmp_path: Path, name: str, steps: int | None = None) -> JobSpec:
    job_dir = tmp_path / name
    job_dir.mkdir()
    if steps is not None:
        (job_dir / "steps").write_text(str(steps))
    spec = JobSpec(name, name, "t", "wf", "d", "", "small", "", "", "", str(job_dir), {})
    spec.write(job_dir / "spec.json")
    return spec


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_cancelled_watch_stops_its_process_and_its_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = JobStatus("ad-1", "c-1", "wf")
    pids: list[int] = []
    real_exec = asyncio.create_subprocess_exec

    async def spawn(*args: str, **kwargs: object) -> asyncio.subprocess.Process:
        child = await real_exec(*args, **kwargs)  # type: ignore[arg-type]
        pids.append(child.pid)
        return child

    monkeypatch.setattr(process.asyncio, "create_subprocess_exec", spawn)
    watch = asyncio.create_task(
        run_job(job_spec(tmp_path, "one"), first, asyncio.Event(), 60.0, lambda _: None)
    )
    while first.step < 5:
        await asyncio.sleep(0.02)
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    frozen = first.step
    await asyncio.sleep(0.3)
    assert first.step == frozen and not alive(pids[0])

    second = JobStatus("ad-2", "c-2", "wf")
    outcome = await run_job(job_spec(tmp_path, "two", steps=3), second, asyncio.Event(), 60.0, lambda _: None)
    assert outcome == {"status": "REJECTED", "offline_score": 0.1}
    assert (second.step, second.total_steps) == (3, 100) and first.step == frozen


async def test_progress_reaches_the_status_and_the_callback(tmp_path: Path) -> None:
    job = JobStatus("ad-3", "c-3", "wf")
    seen: list[int] = []
    outcome = await run_job(
        job_spec(tmp_path, "three", steps=4), job, asyncio.Event(), 60.0, lambda j: seen.append(j.step)
    )
    assert outcome is not None and outcome["status"] == "REJECTED"
    assert seen == [1, 2, 3, 4] and job.phase == "train" and job.updated_at >= job.started_at


async def test_a_stopping_trainer_terminates_the_job(tmp_path: Path) -> None:
    job, stopping = JobStatus("ad-4", "c-4", "wf"), asyncio.Event()
    watch = asyncio.create_task(run_job(job_spec(tmp_path, "four"), job, stopping, 60.0, lambda _: None))
    while job.step < 2:
        await asyncio.sleep(0.02)
    stopping.set()
    assert await asyncio.wait_for(watch, 30) is None
