"""`python -m services.collector`: capture, insight, candidate detection and the read API.

Startup: open ClickHouse (creating the schema), start the event publisher (dead letters,
candidate events and drift signals) and the capture consumer, then run capture, detection and
the drift watch side by side. The
read API shares the health port. SIGTERM: stop fetching, insert and commit the buffered batches
(within ``capture.stop_grace_s``), flush the publisher, leave Kafka, close chDB.
"""

from __future__ import annotations

import asyncio
import logging

from cumulus.artifacts import ArtifactStore
from cumulus.kafka.runtime import KafkaRuntime
from cumulus.privacy.policy import TenantPrivacy, load_key
from cumulus.service import ServiceApi, ServiceContext, run_service
from services.collector.api import Backend, ReadApi
from services.collector.detection import CandidateDetector
from services.collector.drift import DriftWatch
from services.collector.erasure import Eraser, ErasureContext, capture_screen
from services.collector.insights import Insights
from services.collector.nomination import Nominator
from services.collector.pipeline import CapturePipeline
from services.collector.retention import apply_ttls, expire_every
from services.collector.store import ClickHouseStore
from services.collector.tombstones import Tombstones


async def main(ctx: ServiceContext, api: ServiceApi[Backend]) -> None:
    config = ctx.config
    cfg = config.collector
    # aiokafka narrates every group join at INFO in free text; its warnings and errors still show.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    db = ClickHouseStore(config.clickhouse_dsn, config.clickhouse.database)
    publisher = ctx.event_publisher(cfg.capture.spool_dir)
    privacy = TenantPrivacy(config.privacy, load_key(config.redaction_key_file))
    tombstones = Tombstones(db, privacy.key)
    screen = capture_screen(privacy, tombstones)
    pipeline = CapturePipeline(config.kafka.bootstrap_servers, cfg.capture, db, publisher, screen=screen)
    # Registered before the first await: with no checks at all /readyz would already say ready.
    ctx.readiness.update(clickhouse=db.ping, capture=pipeline.readiness)
    insights = Insights(db, cfg.prices)
    artifacts = ArtifactStore(config.artifacts_dir)
    nominator = Nominator(db, artifacts, publisher, cfg.export, config.triton.small_model, privacy)
    detector = CandidateDetector(insights, nominator, db, cfg.detection)
    drift = DriftWatch(db, artifacts, publisher, cfg.drift, cfg.export)

    async def renominate(tenant: str, workflow: str, reason: str) -> str:
        return (await nominator.nominate(tenant, workflow, "erasure", reason, {})).candidate_id

    erasures = ErasureContext(
        privacy.key,
        artifacts,
        config.receipts_dir,
        config.privacy.erasure_policy,
        renominate,
        config.privacy.erasure_training_wait_s,
    )
    await db.open()
    try:
        await tombstones.load()  # before capture starts: an erased event must never come back
        await apply_ttls(db, config.privacy)
        async with KafkaRuntime(ctx, publisher, close_timeout_s=5.0):
            eraser = Eraser(db, tombstones, erasures)
            api.attach(Backend(db, insights, nominator, detector, drift, cfg.detection.window_h, eraser))
            try:
                if await pipeline.start(ctx.stopping):
                    await capture_and_detect(ctx, pipeline, detector, drift, artifacts)
            finally:
                api.detach()
                await pipeline.close()
    finally:
        await db.close()
        ctx.log.info("collector.closed")


async def capture_and_detect(
    ctx: ServiceContext,
    pipeline: CapturePipeline,
    detector: CandidateDetector,
    drift: DriftWatch,
    artifacts: ArtifactStore,
) -> None:
    """Run capture, detection, the drift watch and retention side by side until SIGTERM or one of
    them crashes."""
    db = pipeline.store
    ctx.log.info("collector.started", clickhouse=db.dsn.split("://")[0], database=db.database)
    tasks = [asyncio.create_task(pipeline.run(), name="capture")]
    privacy = ctx.config.privacy
    tasks.append(
        asyncio.create_task(expire_every(3600, db, artifacts, privacy, ctx.stopping), name="retention")
    )
    if ctx.config.collector.detection.enabled:
        tasks.append(asyncio.create_task(detector.run(ctx.stopping), name="detection"))
    if ctx.config.collector.drift.enabled:
        tasks.append(asyncio.create_task(drift.run(ctx.stopping), name="drift"))
    stop = asyncio.create_task(ctx.stopping.wait())
    done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
    pipeline.stop()
    ctx.stopping.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done - {stop}:
        task.result()  # a task that ended on its own is a crash: let it end the process


if __name__ == "__main__":
    read_api = ReadApi()
    run_service("collector", lambda ctx: main(ctx, read_api.api), routes=read_api.mount)
