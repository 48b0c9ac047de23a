"""The LLM judge's model over the real Triton of services/inference (``live`` = tiny-llama here).

tiny-llama answers noise, so this checks the transport and the protocol, not the judgement:
both orders are asked over streams of their own, greedy answers repeat, and whatever the model
says becomes a valid grade (an unreadable answer is a tie, never a win).
"""

from __future__ import annotations

import pytest

from cumulus.errors import NotReady
from cumulus.graders import GradeCase, PairwiseGrader
from services.judge.triton_judge import TritonJudgeModel
from tests.integration.triton_fixtures import LIVE_MODEL, SHARED_MODELS

pytestmark = pytest.mark.integration


async def test_pairwise_grades_through_triton(triton_server: str) -> None:
    model = TritonJudgeModel(triton_server, "live", LIVE_MODEL, models_dir=SHARED_MODELS, max_tokens=3)
    await model.start()
    try:
        assert await model.readiness() is None
        question = [{"role": "user", "content": "Which is better, A or B?"}]
        first, again = await model.ask(question), await model.ask(question)
        assert first == again  # greedy: a redelivered pair is judged the same way
        case = GradeCase(live="Paris", candidate="Lyon", messages=[{"role": "user", "content": "Capital?"}])
        grade = await PairwiseGrader(model).grade(case)
        assert grade.grader == "pairwise" and grade.details["outcome"] in {"candidate", "live", "tie"}
        assert 0.0 <= grade.score <= 1.0
    finally:
        await model.close()


async def test_a_model_triton_does_not_serve_is_refused_at_start(triton_server: str) -> None:
    model = TritonJudgeModel(triton_server, "no-such-model", LIVE_MODEL, models_dir=SHARED_MODELS)
    with pytest.raises(NotReady, match="not ready"):
        await model.start()
    await model.close()
