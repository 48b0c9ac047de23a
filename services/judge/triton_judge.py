"""The LLM judge's model: a Triton model (TensorRT-LLM interface) asked over a stream of its own.

Every Triton model here is decoupled, so even a one-shot question goes over ModelStreamInfer;
each question gets its own stream (tritonclient's ``stream_infer``), which ends when Triton has
answered it. Greedy decoding (temperature 0) keeps a pair's verdict the same when it is
redelivered. The prompt is rendered with the judge model's own chat template.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from cumulus.errors import NotReady
from cumulus.prompts import render_prompt
from cumulus.trtllm import interface
from cumulus.trtllm.errors import translate_client_error


class TritonJudgeModel:
    """``JudgeModel`` over Triton model ``model``, prompts rendered for catalog model ``template_model``."""

    def __init__(
        self,
        url: str,
        model: str,
        template_model: str,
        *,
        models_dir: Path | None = None,
        max_tokens: int = 4,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url
        self.model = model
        self.template_model = template_model
        self.models_dir = models_dir
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self._client: Any = None

    async def start(self) -> None:
        """Connect and check the judge model is served; NotReady naming the fix when it is not."""
        self._client = aioclient.InferenceServerClient(self.url)
        try:
            ready = await self._client.is_model_ready(self.model)
        except InferenceServerException as exc:
            raise NotReady(f"Triton at {self.url} is unreachable: {exc}") from exc
        if not ready:
            raise NotReady(
                f"judge model {self.model!r} is not ready on Triton at {self.url}",
                fix="set judge.llm_judge.model to a served model (live or small), or disable the LLM judge",
            )
        # The first render loads the tokenizer (converting the model once if needed): not mid-batch.
        warm_up = [{"role": "user", "content": "ready?"}]
        await asyncio.to_thread(render_prompt, self.template_model, warm_up, models_dir=self.models_dir)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def readiness(self) -> str | None:
        """None when Triton serves the judge model, else why not (a readiness check)."""
        try:
            ready = self._client is not None and await self._client.is_model_ready(self.model)
        except InferenceServerException as exc:
            return f"Triton at {self.url}: {exc}"
        return None if ready else f"judge model {self.model!r} not ready"

    async def ask(self, messages: Sequence[Mapping[str, str]]) -> str:
        if self._client is None:
            raise NotReady("TritonJudgeModel.ask() before start()")
        prompt = render_prompt(self.template_model, messages, models_dir=self.models_dir).text

        async def one_request() -> AsyncIterator[dict[str, Any]]:
            inputs = {
                "text_input": prompt,
                "max_tokens": self.max_tokens,
                "stream": False,
                "temperature": 0.0,
            }
            yield {"model_name": self.model, "inputs": interface.client_inputs(inputs)}

        text = []
        try:
            stream = self._client.stream_infer(one_request(), stream_timeout=self.timeout_s)
            async for result, error in stream:
                if error is not None:
                    raise self._failed(error) from error
                text.append(bytes(result.as_numpy("text_output").reshape(-1)[0]).decode("utf-8"))
        except InferenceServerException as exc:
            raise self._failed(exc) from exc
        return "".join(text)

    def _failed(self, exc: InferenceServerException) -> NotReady:
        # Every failure is retried with the batch: the judge's own request cannot be the client's fault.
        error = translate_client_error(exc, self.url, self.model)
        return NotReady(f"judge model {self.model!r} on {self.url} failed: {error}")
