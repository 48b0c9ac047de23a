"""`python -m services.judge`: grades shadow pairs into verdicts (see services/judge/handler.py).

Wiring only: config -> grader suite (+ the LLM judge on Triton when enabled) -> calibration
store -> the handler on the consume runtime, with a readiness check for the judge model too.
"""

from __future__ import annotations

from cumulus.config import CumulusConfig
from cumulus.graders import GraderSettings, GraderSuite, PairwiseGrader
from cumulus.graders.semantic import minilm_path
from cumulus.graders.store import JudgeStore, judge_store_path
from cumulus.kafka.runtime import KafkaRuntime
from cumulus.service import ServiceContext, run_service
from services.judge.gold_join import GoldJoin
from services.judge.handler import JudgeHandler, subscription
from services.judge.triton_judge import TritonJudgeModel


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
    try:
        async with KafkaRuntime(ctx, ctx.event_publisher(config.judge.spool_dir)) as kafka:
            gold = GoldJoin(
                store, window_s=config.judge.gold_window_s, max_pending=config.judge.gold_pending_max
            )
            handler = JudgeHandler(kafka.publisher, suite, store, gold)
            await kafka.consume(subscription(config.judge), handler)
    finally:
        store.close()
        if model is not None:
            await model.close()


if __name__ == "__main__":
    run_service("judge", main)
