"""Requests and responses of the TensorRT-LLM interface, read and written on the KServe v2 protos.

Requests are ``ModelInferRequest`` protos (tritonclient's generated ``service_pb2``) with
``raw_input_contents``, exactly as tritonclient serialises them; the gateway's KServe drop-in
forwards its clients' own protos with minimal edits. Working on the protos, rather than through
``InferInput`` objects, keeps that path a pass-through and costs a few microseconds. Shapes carry
the leading batch dimension of 1 the models are configured with (interface.py).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import service_pb2
from tritonclient.utils import np_to_triton_dtype

from cumulus.errors import InvalidArgument
from cumulus.trtllm.interface import FINAL_FLAG, batch_of_one


@dataclass(frozen=True)
class Delta:
    """One model response: text since the previous one, and the token counts so far."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def build_request(
    model: str,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float,
    top_p: float,
    stop: Sequence[str] = (),
    stream: bool,
    request_id: str,
) -> service_pb2.ModelInferRequest:
    """A generate request for ``prompt``, asking for Triton's empty final response."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    add_bytes_input(request, "text_input", [prompt.encode("utf-8")])
    add_input(request, "max_tokens", batch_of_one("max_tokens", max_tokens))
    add_input(request, "stream", batch_of_one("stream", stream))
    add_input(request, "temperature", batch_of_one("temperature", temperature))
    add_input(request, "top_p", batch_of_one("top_p", top_p))
    if stop:
        add_bytes_input(request, "stop_words", [s.encode("utf-8") for s in stop])
    return request


def bytes_element(value: bytes) -> bytes:
    """One BYTES element in Triton's raw layout: little-endian uint32 length, then the bytes."""
    return struct.pack("<I", len(value)) + value


def add_input(request: service_pb2.ModelInferRequest, name: str, array: npt.NDArray[Any]) -> None:
    """Append a numeric input (raw contents) to ``request``; replaces an input of the same name."""
    remove_input(request, name)
    tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype))
    tensor.shape.extend(array.shape)
    request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())


def add_bytes_input(request: service_pb2.ModelInferRequest, name: str, values: list[bytes]) -> None:
    """Append a BYTES input of shape [1, len(values)] (raw contents)."""
    remove_input(request, name)
    tensor = request.inputs.add(name=name, datatype="BYTES")
    tensor.shape.extend([1, len(values)])
    request.raw_input_contents.append(b"".join(bytes_element(v) for v in values))


def remove_input(request: service_pb2.ModelInferRequest, name: str) -> None:
    """Drop input ``name`` (and its raw contents) if present."""
    for index, tensor in enumerate(request.inputs):
        if tensor.name == name:
            del request.inputs[index]
            if index < len(request.raw_input_contents):
                del request.raw_input_contents[index]
            return


def uses_raw_contents(request: service_pb2.ModelInferRequest) -> bool:
    """True when inputs travel as raw_input_contents (tritonclient, perf_analyzer), or there are none."""
    return bool(request.raw_input_contents) or not request.inputs


def input_text(request: service_pb2.ModelInferRequest, name: str) -> str | None:
    """The first element of BYTES input ``name`` as text; None when absent."""
    for index, tensor in enumerate(request.inputs):
        if tensor.name != name:
            continue
        if request.raw_input_contents:
            raw = _raw_at(request.raw_input_contents, index, name)
            values = _split_bytes(raw, name)
        else:
            values = list(tensor.contents.bytes_contents)
        if not values:
            return ""
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(name, f"not UTF-8: {exc}") from exc
    return None


def input_scalar(request: service_pb2.ModelInferRequest, name: str) -> float | None:
    """The first element of numeric input ``name``; None when absent."""
    for index, tensor in enumerate(request.inputs):
        if tensor.name != name:
            continue
        dtype = _NUMPY.get(tensor.datatype)
        if dtype is None:
            raise InvalidArgument(name, f"unsupported datatype {tensor.datatype}")
        if request.raw_input_contents:
            values = np.frombuffer(_raw_at(request.raw_input_contents, index, name), dtype=dtype)
        else:
            values = np.array(_typed_contents(tensor), dtype=dtype)
        return float(values[0]) if values.size else None
    return None


def output_delta(response: service_pb2.ModelInferResponse) -> Delta | None:
    """The text and token counts of one response; None for an empty (final-flag-only) response."""
    if not response.outputs:
        return None
    text, prompt_tokens, completion_tokens = "", 0, 0
    raw = response.raw_output_contents
    for index, tensor in enumerate(response.outputs):
        if tensor.name == "text_output":
            values = _split_bytes(raw[index], "text_output") if raw else list(tensor.contents.bytes_contents)
            text = b"".join(values).decode("utf-8", "replace")
        elif tensor.name in ("prompt_tokens", "completion_tokens"):
            count = struct.unpack_from("<i", raw[index])[0] if raw else tensor.contents.int_contents[0]
            if tensor.name == "prompt_tokens":
                prompt_tokens = count
            else:
                completion_tokens = count
    return Delta(text, prompt_tokens, completion_tokens)


def is_final(response: service_pb2.ModelInferResponse) -> bool:
    """True on the response Triton flags as the last one of its request."""
    flag = response.parameters.get(FINAL_FLAG)
    return flag is not None and flag.bool_param


def make_response(
    model: str, request_id: str, delta: Delta, *, final: bool = False
) -> service_pb2.ModelInferResponse:
    """A response of the generate interface carrying ``delta`` (as Triton would send it)."""
    response = service_pb2.ModelInferResponse(model_name=model, model_version="1", id=request_id)
    text = response.outputs.add(name="text_output", datatype="BYTES")
    text.shape.extend([1, 1])
    response.raw_output_contents.append(bytes_element(delta.text.encode("utf-8")))
    for name, value in (
        ("prompt_tokens", delta.prompt_tokens),
        ("completion_tokens", delta.completion_tokens),
    ):
        tensor = response.outputs.add(name=name, datatype="INT32")
        tensor.shape.extend([1, 1])
        response.raw_output_contents.append(struct.pack("<i", value))
    if final:
        response.parameters[FINAL_FLAG].bool_param = True
    return response


_NUMPY = {
    "BOOL": np.bool_,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def _typed_contents(tensor: service_pb2.ModelInferRequest.InferInputTensor) -> list[float]:
    contents = tensor.contents
    for field in ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents"):
        values = getattr(contents, field)
        if values:
            return list(values)
    return list(contents.fp32_contents) or list(contents.fp64_contents)


def _raw_at(raw: list[bytes], index: int, name: str) -> bytes:
    if index >= len(raw):
        raise InvalidArgument(name, "raw_input_contents has no entry for this input")
    return raw[index]


def _split_bytes(raw: bytes, name: str) -> list[bytes]:
    values: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(name, "truncated BYTES tensor")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidArgument(name, "truncated BYTES tensor")
        values.append(raw[offset : offset + size])
        offset += size
    return values
