"""Unexpected errors become INTERNAL (logged, not leaked); requests are counted in Prometheus."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from cumulus.errors import InvalidArgument, NotReady
from cumulus.kafka import topics
from cumulus.prompts import RenderedPrompt
from cumulus.trtllm import tensors
from cumulus.v1 import common_pb2
from services.gateway.error_mapping import status_for
from services.gateway.metrics import LabelBudget
from tests.unit.gateway.conftest import Harness, ask


class CrashingRenderer:
    def render(
        self, model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> RenderedPrompt:
        raise RuntimeError("secret internals")


def test_status_for_maps_cumulus_errors_and_hides_the_rest() -> None:
    assert status_for(InvalidArgument("messages", "empty")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "messages: empty",
    )
    assert status_for(NotReady("triton down"))[0] == grpc.StatusCode.UNAVAILABLE
    code, message = status_for(RuntimeError("secret"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in message


async def test_a_bug_is_internal_logged_with_traceback_and_still_captured(
    gateway: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.core.renderer = CrashingRenderer()
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Generate(ask(), metadata=gateway.auth())
    assert err.value.code() == grpc.StatusCode.INTERNAL and "secret" not in (err.value.details() or "")
    crash = next(r for r in caplog.records if "rpc.crashed" in r.getMessage())
    assert crash.exc_info is not None and "/cumulus.v1.Gateway/Generate" in crash.getMessage()
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.status == common_pb2.STATUS_ERROR and event.error_code == "INTERNAL"


async def test_requests_are_counted_per_workflow_and_mode(gateway: Harness) -> None:
    labels = {"api": "generate", "workflow": "metered", "mode": "live", "code": "OK"}
    before = REGISTRY.get_sample_value("cumulus_gateway_requests_total", labels) or 0.0
    await gateway.stub.Generate(ask(workflow="metered"), metadata=gateway.auth())
    assert REGISTRY.get_sample_value("cumulus_gateway_requests_total", labels) == before + 1
    count = REGISTRY.get_sample_value(
        "cumulus_gateway_request_latency_seconds_count", {"workflow": "metered", "mode": "live"}
    )
    assert count is not None and count >= 1


async def test_grpc_health_reports_serving(gateway: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(gateway.channel)
    for service in ("", "cumulus.v1.Gateway", "inference.GRPCInferenceService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_response_tensors_round_trip() -> None:
    response = tensors.make_response("live", "r", tensors.Delta("héllo", 3, 4), final=True)
    assert tensors.output_delta(response) == tensors.Delta("héllo", 3, 4) and tensors.is_final(response)
    assert tensors.output_delta(tensors.make_response("live", "r", tensors.Delta("", 0, 0))) is not None


def test_workflow_labels_are_bounded_whatever_clients_name() -> None:
    budget = LabelBudget(3)
    assert [budget(f"wf-{i}") for i in range(5)] == ["wf-0", "wf-1", "wf-2", "other", "other"]
    assert budget("wf-1") == "wf-1"  # a named one stays named
