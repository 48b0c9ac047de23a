"""Triton's failures become the same cumulus errors for every caller; a client's mistake names the tensor."""

import grpc
import pytest
from tritonclient.utils import InferenceServerException

from cumulus.errors import InvalidArgument, NotReady
from cumulus.trtllm.errors import (
    DeadlineExceeded,
    LoraNotCached,
    TritonError,
    error_from_text,
    translate_client_error,
)

LORA_MISS = "LoRA task 42 not found in cache. Please send LoRA weights with request"


def test_an_unknown_lora_task_is_not_found_naming_lora_task_id() -> None:
    error = error_from_text(LORA_MISS, "live")
    assert isinstance(error, LoraNotCached)
    assert error.grpc_status == grpc.StatusCode.NOT_FOUND and error.http_status == 404
    assert error.field == "lora_task_id" and str(error).startswith("lora_task_id: LoRA task 42")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("max_tokens: must be between 1 and 512, got 0", "max_tokens"),  # the inference host's own check
        ("lora_config: expected 3 columns", "lora_config"),
        (
            "[request id: <id_unknown>] unexpected shape for input 'top_p' for model 'live'. "
            "Expected [-1,1], got [1,2]. ",
            "top_p",
        ),
        (
            "[request id: <id_unknown>] inference input 'max_tokens' data-type is 'FP32', "
            "but model 'live' expects 'INT32'",
            "max_tokens",
        ),
        (
            "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'live'. "
            "Got input(s) ['text_input'], but missing required input(s) ['max_tokens']. ",
            "max_tokens",
        ),
    ],
)
def test_a_bad_input_is_invalid_argument_naming_it(text: str, field: str) -> None:
    error = error_from_text(text, "live")
    assert isinstance(error, InvalidArgument) and error.field == field
    assert error.grpc_status == grpc.StatusCode.INVALID_ARGUMENT


def test_anything_else_is_a_triton_error_naming_the_model() -> None:
    error = error_from_text("CUDA out of memory", "small")
    assert type(error) is TritonError and str(error) == "model small: CUDA out of memory"
    assert error.grpc_status == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", NotReady),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", DeadlineExceeded),
        ("StatusCode.INVALID_ARGUMENT", "text_input: must not be empty", InvalidArgument),
        (None, LORA_MISS, LoraNotCached),  # a stream's error response carries no status
    ],
)
def test_tritonclient_failures_translate_like_rpc_errors(
    status: str | None, message: str, expected: type[Exception]
) -> None:
    exc = InferenceServerException(message, status=status)
    assert isinstance(translate_client_error(exc, "localhost:8001", "live"), expected)


def test_a_model_triton_does_not_serve_keeps_its_not_found_code() -> None:
    exc = InferenceServerException(
        "Request for unknown model: 'big' is not found", status="StatusCode.NOT_FOUND"
    )
    error = translate_client_error(exc, "localhost:8001", "big")
    assert type(error) is TritonError and error.grpc_status == grpc.StatusCode.NOT_FOUND
