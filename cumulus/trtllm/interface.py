"""The tensors of TensorRT-LLM's generate interface, as the models here serve them.

Shapes exclude the batch dimension; clients send ``[1, ...]``, one prompt per request. Every model
is decoupled: clients use ModelStreamInfer for both modes and read until the empty response
flagged ``triton_final_response`` (asked for with ``triton_enable_empty_final_response``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient

FINAL_FLAG = "triton_final_response"
EMPTY_FINAL = "triton_enable_empty_final_response"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: its name, KServe datatype, numpy dtype (``bytes`` for BYTES) and shape."""

    name: str
    datatype: str
    dtype: type
    shape: tuple[int, ...]
    optional: bool = False

    @property
    def numpy_dtype(self) -> Any:
        """The dtype of a numpy array holding this tensor (object for BYTES, as tritonclient wants)."""
        return np.object_ if self.dtype is bytes else self.dtype


INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_input", "BYTES", bytes, (1,)),
    TensorSpec("max_tokens", "INT32", np.int32, (1,)),
    TensorSpec("stream", "BOOL", np.bool_, (1,), optional=True),
    TensorSpec("temperature", "FP32", np.float32, (1,), optional=True),
    TensorSpec("top_p", "FP32", np.float32, (1,), optional=True),
    # One stop string per element (TRT-LLM would also split an element on commas).
    TensorSpec("stop_words", "BYTES", bytes, (-1,), optional=True),
    TensorSpec("lora_task_id", "UINT64", np.uint64, (1,), optional=True),
    # FP16 like TensorRT-LLM's model config; rows of flattened in/out weights per module and layer.
    TensorSpec("lora_weights", "FP16", np.float16, (-1, -1), optional=True),
    TensorSpec("lora_config", "INT32", np.int32, (-1, 3), optional=True),
)

OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_output", "BYTES", bytes, (1,)),
    # Our extension of the interface: token counts, so the gateway can meter requests without a
    # tokenizer of its own. completion_tokens counts every sampled token.
    TensorSpec("prompt_tokens", "INT32", np.int32, (1,)),
    TensorSpec("completion_tokens", "INT32", np.int32, (1,)),
)

SPECS: Mapping[str, TensorSpec] = {spec.name: spec for spec in INPUTS + OUTPUTS}
INPUT_NAMES: tuple[str, ...] = tuple(spec.name for spec in INPUTS)


def batch_of_one(name: str, values: Any) -> npt.NDArray[Any]:
    """``values`` (a scalar or a list of them) as input ``name``'s array with the batch dimension."""
    spec = SPECS[name]
    if spec.dtype is bytes:
        items = values if isinstance(values, list | tuple) else [values]
        return np.array([[v.encode("utf-8") if isinstance(v, str) else v for v in items]], dtype=object)
    return np.array([[values]], dtype=spec.dtype)


def client_inputs(values: Mapping[str, Any]) -> list[grpcclient.InferInput]:
    """tritonclient ``InferInput``s for ``values`` (input name -> scalar or list), typed by the spec."""
    inputs = []
    for name, value in values.items():
        array = batch_of_one(name, value)
        tensor = grpcclient.InferInput(name, list(array.shape), SPECS[name].datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs
