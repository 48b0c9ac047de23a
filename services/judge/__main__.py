"""`python -m services.judge`: grades shadow pairs into verdicts (see services/judge/worker.py).

Wiring only: config -> grader suite (+ the LLM judge on Triton when enabled) -> calibration
store -> publisher -> consumer -> worker loop, with readiness checks for Kafka, the loop and the
judge model, and an orderly shutdown on SIGTERM (the batch in hand finishes, then everything closes).
"""

from __future__ import annotations

from cumulus import topics
from cumulus.config import CumulusConfig
from cumulus.consuming import start_consumer
from cumulus.graders import GraderSettings, GraderSuite, PairwiseGrader
from cumulus.graders.semantic import minilm_path
from cumulus.graders.store import JudgeStore, judge_store_path
from cumulus.graders.triton_judge import TritonJudgeModel
from cumulus.service import ServiceContext, kafka_check, run_service
from services.judge.worker import JudgeWorker


def grader_settings(config: CumulusConfig) -> GraderSettings:
    judge = config.judge
    return GraderSettings(
        semantic_threshold=judge.semantic_threshold,
        json_pass_f1=judge.json_pass_f1,
        label_max_chars=judge.label_max_chars,
        workflow_graders=dict(judge.graders),
        escalate=frozenset(judge.llm_judge.escalate),
    )


def judge_model(config: CumulusConfig) -> TritonJudgeModel:
    llm = config.judge.llm_judge
    template = config.triton.live_model if llm.model == "live" else config.triton.small_model
    return TritonJudgeModel(
        config.triton.grpc_url,
        llm.model,
        template,
        models_dir=config.models_dir,
        max_tokens=llm.max_tokens,
        timeout_s=llm.timeout_s,
    )


async def main(ctx: ServiceContext) -> None:
    config = ctx.config
    minilm_path()  # fail at start, naming the install command, not at the first free-text pair
    model = judge_model(config) if config.judge.llm_judge.enabled else None
    if model is not None:
        await model.start()
        ctx.readiness["llm_judge"] = model.readiness
    judge = PairwiseGrader(model, config.judge.llm_judge.concurrency) if model else None
    suite = GraderSuite(grader_settings(config), judge=judge)
    store = JudgeStore(judge_store_path(config), retention_s=config.judge.store_retention_days * 86400)
    publisher = ctx.event_publisher(config.judge.spool_dir)
    await publisher.start()
    ctx.readiness["kafka"] = kafka_check(config.kafka.bootstrap_servers)
    consumer = await start_consumer(
        topics.SHADOW.name,
        topics.FEEDBACK.name,
        bootstrap_servers=config.kafka.bootstrap_servers,
        group_id=config.judge.group_id,
        client_id="judge",
        stopping=ctx.stopping,
    )
    try:
        if consumer is not None:
            worker = JudgeWorker(
                consumer,
                publisher,
                suite,
                store,
                batch_max=config.judge.batch_max,
                batch_wait_ms=config.judge.batch_wait_ms,
            )
            ctx.readiness["grading"] = worker.progress.check
            ctx.log.info(
                "judge.consuming",
                topics=[topics.SHADOW.name, topics.FEEDBACK.name],
                store=str(judge_store_path(config)),
            )
            await worker.run(ctx.stopping)
    finally:
        if consumer is not None:
            await consumer.stop()
        await publisher.close()
        store.close()
        if model is not None:
            await model.close()


if __name__ == "__main__":
    run_service("judge", main)
