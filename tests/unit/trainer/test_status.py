"""The running job on the trainer's GET /status, and in `cumulus status` (probe_trainer)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace

from cumulus.config import CumulusConfig, TrainerConfig
from cumulus.logs import get_logger
from cumulus.operators import ensure_dev_operator_token
from cumulus.service import ServiceContext, _serve
from ops.stack.probes import probe_trainer
from services.trainer import __main__ as trainer_main
from services.trainer.process import JobStatus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_status_endpoint_and_probe_show_the_running_job(tmp_path: Path) -> None:
    port = _free_port()
    config = CumulusConfig(state_dir=tmp_path, trainer=TrainerConfig(health_port=port))
    ctx = ServiceContext(name="trainer", config=config, log=get_logger("t"))
    headers = {"Authorization": f"Bearer {ensure_dev_operator_token(tmp_path)}"}
    job = JobStatus("ad-1", "cand-1", "wf-1", phase="train", progress=0.5, step=3, total_steps=6, loss=1.25)
    idle_worker = SimpleNamespace(status=lambda: {"job": None, "recent": []})
    worker = SimpleNamespace(status=lambda: {"job": job.__dict__, "recent": []})

    async def main(ctx: ServiceContext) -> None:
        async def consuming() -> str | None:
            return None

        ctx.readiness["consumer"] = consuming
        await ctx.stopping.wait()

    task = asyncio.create_task(_serve(ctx, main, trainer_main.status_routes))
    trainer_main.API.attach(idle_worker)  # type: ignore[arg-type]
    try:
        for _ in range(100):
            idle = await asyncio.to_thread(probe_trainer, "127.0.0.1", port, headers)
            if idle.healthy:
                break
            await asyncio.sleep(0.05)
        assert idle.detail == "ready, no training job"
        trainer_main.API.attach(worker)  # type: ignore[arg-type]
        assert (await asyncio.to_thread(probe_trainer, "127.0.0.1", port)).detail == "ready"  # no token
        busy = await asyncio.to_thread(probe_trainer, "127.0.0.1", port, headers)
        assert busy.healthy and busy.detail == "training ad-1 (wf-1): train 50%, step 3/6"
        assert busy.extra["training"]["loss"] == 1.25
    finally:
        trainer_main.API.detach()
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=5)
