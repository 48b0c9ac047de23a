"""Triton's failures as cumulus errors: the one place their texts and gRPC codes are interpreted.

A failure the client caused names the tensor, the same way for every caller: the inference host
reports a bad input as ``<input>: <problem>``, Triton's core names it in quotes (``unexpected
shape for input 'max_tokens' ...``), and a LoRA task the server has not cached is NOT_FOUND naming
``lora_task_id``. The gateway catches that last one when it sent the task id itself, and resends
the request with the adapter's weights (the cache-miss protocol).
"""

from __future__ import annotations

import re

import grpc
from tritonclient.utils import InferenceServerException

from cumulus.errors import CumulusError, InvalidArgument, NotReady
from cumulus.trtllm.interface import INPUT_NAMES

_LORA_MISS = re.compile(r"LoRA task (\d+) not found in cache")
# The inference host (services/inference) raises InvalidArgument: "<input name>: <problem>".
_BAD_INPUT = re.compile(rf"^({'|'.join(INPUT_NAMES)}): ")
# Triton core's own checks of a request against the model config.
_MISSING_INPUT = re.compile(r"missing required input\(s\) \['(\w+)'")
_NAMED_INPUT = re.compile(r"\binput '(\w+)'")


class TritonError(CumulusError):
    """Triton (or the model) answered the request with an error."""


class LoraNotCached(TritonError):
    """TensorRT-LLM's cache miss: the task id is unknown until it is sent with its weights and config."""

    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404

    def __init__(self, text: str) -> None:
        self.field = "lora_task_id"
        super().__init__(f"lora_task_id: {text}")


class DeadlineExceeded(CumulusError):
    """A model did not answer within the request's deadline."""

    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


def error_from_text(text: str, model: str) -> CumulusError:
    """The cumulus error for an error message Triton sent (in a stream response or an RPC status)."""
    if _LORA_MISS.search(text):
        return LoraNotCached(text)
    bad_input = _BAD_INPUT.match(text)
    if bad_input:
        return InvalidArgument(bad_input.group(1), text[bad_input.end() :])
    named = _MISSING_INPUT.search(text) or _NAMED_INPUT.search(text)
    if named:
        return InvalidArgument(named.group(1), f"model {model}: {text}")
    return TritonError(f"model {model}: {text}")


def translate_rpc_error(exc: grpc.aio.AioRpcError, url: str, model: str) -> CumulusError:
    """The cumulus error for a failed gRPC call to Triton at ``url``."""
    return _translate(exc.code(), exc.details() or "", url, model)


def translate_client_error(exc: InferenceServerException, url: str, model: str) -> CumulusError:
    """The cumulus error for a failure tritonclient raised (its status is the gRPC code's name)."""
    status = str(exc.status() or "")
    code = next((c for c in grpc.StatusCode if status.endswith(c.name)), grpc.StatusCode.UNKNOWN)
    return _translate(code, exc.message() or str(exc), url, model)


def _translate(code: grpc.StatusCode, details: str, url: str, model: str) -> CumulusError:
    if code == grpc.StatusCode.UNAVAILABLE:
        return NotReady(f"Triton at {url} is unreachable: {details}", fix="start it (`cumulus up`)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"model {model or '?'} did not answer in time")
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN):
        error = error_from_text(details, model or "?")
        if type(error) is TritonError and code != grpc.StatusCode.UNKNOWN:
            error.grpc_status = code  # e.g. NOT_FOUND for a model Triton does not serve
        return error
    return TritonError(f"Triton {code.name} for model {model or '?'}: {details}")
