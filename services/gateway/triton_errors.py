"""Triton's failures as cumulus errors: the one place their texts and gRPC codes are interpreted."""

from __future__ import annotations

import re

import grpc

from cumulus.errors import CumulusError, InvalidArgument, NotReady

_LORA_MISS = re.compile(r"LoRA task (\d+) not found in cache")
# Our CPU backend reports a bad input as "<input name>: <problem>" (cumulus InvalidArgument).
_BAD_INPUT = re.compile(r"^(text_input|max_tokens|stream|temperature|top_p|stop_words|lora_\w+): ")


class TritonError(CumulusError):
    """Triton (or the model) answered the request with an error."""


class LoraNotCached(TritonError):
    """TensorRT-LLM's cache miss: resend the request with the adapter's weights and config."""


class DeadlineExceeded(CumulusError):
    """A model did not answer within the request's deadline."""

    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


def error_from_text(text: str, model: str) -> CumulusError:
    """The cumulus error for an error message Triton sent in a stream response."""
    if _LORA_MISS.search(text):
        return LoraNotCached(text)
    bad_input = _BAD_INPUT.match(text)
    if bad_input:
        return InvalidArgument(bad_input.group(1), text[bad_input.end() :])
    return TritonError(f"model {model}: {text}")


def translate_rpc_error(exc: grpc.aio.AioRpcError, url: str, model: str) -> CumulusError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return NotReady(f"Triton at {url} is unreachable: {details}", fix="start it (`cumulus up`)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"model {model or '?'} did not answer in time")
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
        error = error_from_text(details, model)
        error.grpc_status = code
        return error
    return TritonError(f"Triton {code.name} for model {model or '?'}: {details}")
