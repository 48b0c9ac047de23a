"""One table of tensors: the inference host serves it, the clients build requests from it."""

import numpy as np

from cumulus.trtllm import interface, tensors
from services.inference.protocol import INPUTS, OUTPUTS


def test_the_inference_host_serves_exactly_the_interface() -> None:
    served = [(t.name, t.shape, t.optional) for t in INPUTS]
    assert served == [(s.name, s.shape, s.optional) for s in interface.INPUTS]
    assert [t.name for t in OUTPUTS] == [s.name for s in interface.OUTPUTS]


def test_a_built_request_types_every_input_by_the_table() -> None:
    request = tensors.build_request(
        "live",
        "héllo",
        max_tokens=8,
        temperature=0.5,
        top_p=0.9,
        stop=("\n", "END"),
        stream=True,
        request_id="r",
    )
    datatypes = {t.name: t.datatype for t in request.inputs}
    assert datatypes == {name: interface.SPECS[name].datatype for name in datatypes}
    assert set(datatypes) == {"text_input", "max_tokens", "stream", "temperature", "top_p", "stop_words"}
    assert tensors.input_text(request, "text_input") == "héllo"
    assert tensors.input_scalar(request, "max_tokens") == 8
    assert tensors.input_scalar(request, "top_p") == np.float32(0.9)


def test_client_inputs_carry_the_tables_datatypes() -> None:
    inputs = interface.client_inputs(
        {"text_input": "hi", "max_tokens": 4, "stream": False, "lora_task_id": 7}
    )
    assert [(i.name(), i.datatype(), i.shape()) for i in inputs] == [
        ("text_input", "BYTES", [1, 1]),
        ("max_tokens", "INT32", [1, 1]),
        ("stream", "BOOL", [1, 1]),
        ("lora_task_id", "UINT64", [1, 1]),
    ]
