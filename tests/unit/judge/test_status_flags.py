"""`cumulus status` flags a grader whose verdicts disagree with human reviewers (probe_judge)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from cumulus.config import CumulusConfig, JudgeConfig
from cumulus.graders.store import FeedbackRow, GradeRow, JudgeStore
from cumulus.logs import get_logger
from cumulus.service import ServiceContext, _serve
from ops.stack.probes import probe_judge


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_grader_that_passes_what_people_reject_is_flagged(tmp_path: Path) -> None:
    port = _free_port()
    config = CumulusConfig(state_dir=tmp_path, judge=JudgeConfig(health_port=port))
    ctx = ServiceContext(name="judge", config=config, log=get_logger("t"))

    async def main(ctx: ServiceContext) -> None:
        async def consuming() -> str | None:
            return None

        ctx.readiness["consumer"] = consuming
        await ctx.stopping.wait()

    task = asyncio.create_task(_serve(ctx, main))
    try:
        for _ in range(100):
            clean = await asyncio.to_thread(probe_judge, "127.0.0.1", port, config)
            if clean.healthy:
                break
            await asyncio.sleep(0.05)
        assert clean.detail == "ready"  # no store yet: nothing to flag

        store = JudgeStore(tmp_path / "judge" / "judge.sqlite")
        lazy = [
            GradeRow(f"v{n}", f"p{n}", f"r{n}", "wf", "ad", "semantic", 1.0, True, None, "d")
            for n in range(30)
        ]
        reviews = [FeedbackRow(f"f{n}", f"r{n}", "wf", 1.0 if n % 2 else 0.0, "", "") for n in range(30)]
        store.record(lazy, reviews)
        store.close()
        flagged = await asyncio.to_thread(probe_judge, "127.0.0.1", port, config)
        assert flagged.healthy and flagged.detail.startswith("ready; FLAGGED semantic: poor agreement")
        assert flagged.extra["calibration_flags"] and "checks" in flagged.extra
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=5)
