"""The issue's own probes, made with clients that are not ours: librdkafka, curl and tritonclient.

Records go to Kafka through librdkafka (the C client kcat is built on) logged in as one of the
stack's principals, as a leaked password or a compromised service would; curl calls the HTTP API
and tritonclient speaks KServe to the gateway. The other files of this suite probe the same
surfaces through aiokafka, urllib and grpc; these show the guarantees hold for any client.

Why not kcat itself: Debian 12's kcat 1.7.1 bundles librdkafka 2.0.2, whose SCRAM login Kafka 4
brokers refuse as "invalid credentials" with the right password (kcat issue #462; fixed in
librdkafka 2.6.1). confluent-kafka 2.16 ships librdkafka 2.16 and logs in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from confluent_kafka import KafkaException, Producer
from tritonclient.utils import InferenceServerException

from cumulus.kafka import codec, topics
from cumulus.kafka.signing import HEADER, CommandSigner
from cumulus.trtllm import interface
from cumulus.v1 import events_pb2
from tests.integration.collector_process import inference_event, stamped
from tests.security.conftest import SecureStack, as_principal, dead_letters, produce_events
from tests.security.test_control_plane import _adapter_event, _command
from tests.security.test_front_door import PROMPT, kserve_client, serving


def rdkafka_produce(
    stack: SecureStack,
    principal: str,
    topic: str,
    key: bytes,
    values: list[bytes],
    headers: dict[str, bytes] | None = None,
) -> None:
    """What ``kcat -P -k KEY -H NAME=VALUE`` does: each value one record, logged in as ``principal``."""
    login = as_principal(principal)
    producer = Producer(
        {
            "bootstrap.servers": stack.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": login.username,
            "sasl.password": login.password,
            "ssl.ca.location": str(login.cafile),
            "acks": "all",
        }
    )
    failures: list[str] = []

    def delivered(error: KafkaException | None, _: object) -> None:
        if error is not None:
            failures.append(str(error))

    for value in values:
        producer.produce(topic, value, key, headers=list((headers or {}).items()), on_delivery=delivered)
    assert producer.flush(30) == 0, "records not delivered within 30 s"
    assert not failures, failures


def curl_status(url: str, token: str | None = None) -> int:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed (fix: apt-get install -y curl; scripts/test.sh does)")
    args = [curl, "-s", "-o", os.devnull, "-w", "%{http_code}", "--max-time", "30", url]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    return int(subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout)


def test_curl_without_a_token_gets_401(secure_stack: SecureStack) -> None:
    url = f"http://127.0.0.1:{secure_stack.config.collector.health_port}"
    assert curl_status(f"{url}/api/v1/workflows") == 401
    assert curl_status(f"{url}/api/v1/adapters", token="cmo_guessed") == 401
    assert curl_status(f"{url}/api/v1/workflows", token=secure_stack.token) == 200
    assert curl_status(f"{url}/healthz") == 200


def test_a_forged_command_from_librdkafka_leaves_the_rollout_unchanged(secure_stack: SecureStack) -> None:
    stack = secure_stack
    workflow = f"rdk-{uuid.uuid4().hex[:8]}"
    produce_events(stack.bootstrap, topics.ADAPTERS, [_adapter_event(workflow, "cand-1")], "trainer")
    assert stack.rollout(workflow)["state"] == "shadow"
    forged = _command(stack, workflow, events_pb2.ROLLOUT_ACTION_ROLLBACK)
    key, value = codec.encode_key("acme", workflow), codec.encode_event(forged)
    signature = CommandSigner(b"guessed-command-key-32-bytes....").sign(key, value)
    # The CLI's own login: it may write commands, but it cannot sign them without the command key.
    rdkafka_produce(stack, "cli", topics.COMMANDS.name, key, [value], {HEADER: signature})
    [letter] = dead_letters(stack.bootstrap, forged.meta.event_id.encode())
    assert "forged command" in letter.reason
    time.sleep(1.0)
    assert stack.rollout(workflow)["state"] == "shadow"


def test_an_overflowing_timestamp_from_librdkafka_leaves_the_collector_healthy_and_exact(
    secure_stack: SecureStack,
) -> None:
    stack = secure_stack
    workflow = f"rdk-{uuid.uuid4().hex[:8]}"
    collector_pid = stack.pid("collector")
    good = [inference_event(workflow, i) for i in range(6)]
    overflowing = inference_event(workflow, 99)
    overflowing.meta.occurred_at.seconds = 2**40  # past year 9999
    values = [stamped(e)[1] for e in [*good[:3], overflowing, *good[3:]]]
    key = codec.encode_key("acme", workflow)
    rdkafka_produce(stack, "gateway", topics.INFERENCE.name, key, values)
    assert stack.wait_requests(workflow, 6) == 6
    assert dead_letters(stack.bootstrap, overflowing.meta.event_id.encode())
    assert stack.pid("collector") == collector_pid
    assert stack.http("collector", "/readyz")[0] == 200


def test_tritonclient_lora_task_id_and_an_8_mib_prompt_are_refused(secure_stack: SecureStack) -> None:
    auth = {"authorization": f"Bearer {secure_stack.key}"}
    client = kserve_client(secure_stack)
    try:
        inputs = interface.client_inputs({"text_input": PROMPT, "max_tokens": 2, "stream": False})
        task = grpcclient.InferInput("lora_task_id", [1, 1], "UINT64")
        task.set_data_from_numpy(np.array([[7]], dtype=np.uint64))
        with pytest.raises(InferenceServerException) as refused:
            client.infer("small", [*inputs, task], headers=auth)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        big = interface.client_inputs({"text_input": "x" * (8 << 20), "max_tokens": 2, "stream": False})
        with pytest.raises(InferenceServerException) as too_big:
            client.infer("small", big, headers=auth)
        assert too_big.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        client.close()
    assert serving(secure_stack)


def curl(args: list[str]) -> tuple[int, str]:
    """curl's HTTP status (0: no HTTP answer, e.g. a refused handshake) and body."""
    binary = shutil.which("curl")
    if binary is None:
        pytest.skip("curl not installed (fix: apt-get install -y curl; scripts/test.sh does)")
    done = subprocess.run(
        [binary, "-s", "-w", "\n%{http_code}", "--max-time", "60", *args],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body


def test_the_openai_door_answers_only_mutual_tls_clients_with_a_key(secure_stack: SecureStack) -> None:
    """The HTTP door serves the gRPC port's certificates and its mutual TLS; `curl -N` reads the raw
    server-sent events of a streamed completion."""
    tls = secure_stack.tls
    assert tls.cert_file is not None and tls.key_file is not None
    url = f"https://127.0.0.1:{secure_stack.config.gateway.http_port}/v1"
    trust = ["--cacert", str(tls.ca_file)]
    client_cert = [*trust, "--cert", str(tls.cert_file), "--key", str(tls.key_file)]
    key = ["-H", f"Authorization: Bearer {secure_stack.key}"]
    assert curl([f"http://127.0.0.1:{secure_stack.config.gateway.http_port}/v1/models"])[0] == 0
    assert curl([*trust, *key, f"{url}/models"])[0] == 0  # no client certificate: no handshake
    status, body = curl([*client_cert, f"{url}/models"])
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
    status, body = curl([*client_cert, *key, f"{url}/models"])
    assert status == 200 and "live" in [m["id"] for m in json.loads(body)["data"]]

    messages = [{"role": "user", "content": "hi"}]
    request = {"model": "live", "messages": messages, "max_tokens": 3, "stream": True}
    status, body = curl(
        [*client_cert, *key, "-N", "-H", "content-type: application/json", "-d", json.dumps(request),
         f"{url}/chat/completions"]
    )  # fmt: skip
    assert status == 200, body
    events = [e.removeprefix("data: ") for e in body.split("\n\n") if e.strip()]
    assert events[-1] == "[DONE]" and json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] in ("stop", "length")
