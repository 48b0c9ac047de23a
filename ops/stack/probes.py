"""Health probes the CLI uses to tell whether a stack component is up (sync, short timeouts)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.graders.store import read_calibration
from cumulus.kafka import security
from cumulus.operators import auth_headers


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def http_json(url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET url; returns (status, parsed JSON body or text). Status 0 = unreachable."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=timeout_s
        ) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (OSError, TimeoutError):
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def probe_kafka(host: str, port: int) -> ProbeResult:
    """Healthy when the broker answers a metadata request (not merely accepts TCP)."""
    if not port_open(host, port):
        return ProbeResult(False, f"{host}:{port} not accepting connections")
    try:
        return ProbeResult(True, "metadata ok", {"topics": _kafka_topics(f"{host}:{port}")})
    except Exception as exc:  # any client failure means "not healthy yet"
        return ProbeResult(False, f"metadata request failed: {type(exc).__name__}: {exc}")


def _kafka_topics(bootstrap: str) -> list[str]:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def list_topics() -> list[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=3000, **security.client_kwargs()
        )
        await admin.start()
        try:
            return sorted(t for t in await admin.list_topics() if t.startswith("cumulus."))
        finally:
            await admin.close()

    return asyncio.run(asyncio.wait_for(list_topics(), timeout=5.0))


def probe_triton(host: str, http_port: int, models: tuple[str, ...] = ("live", "small")) -> ProbeResult:
    """Healthy when the server is ready and every expected model is ready."""
    status, _ = http_json(f"http://{host}:{http_port}/v2/health/ready")
    if status != 200:
        return ProbeResult(False, "server not ready" if status else f"{host}:{http_port} unreachable")
    ready = {m: http_json(f"http://{host}:{http_port}/v2/models/{m}/ready")[0] == 200 for m in models}
    missing = [m for m, ok in ready.items() if not ok]
    if missing:
        return ProbeResult(False, f"models not ready: {', '.join(missing)}", {"models": ready})
    return ProbeResult(True, "server and models ready", {"models": ready})


def probe_service(host: str, health_port: int) -> ProbeResult:
    """Healthy when the service's /readyz says ready."""
    status, body = http_json(f"http://{host}:{health_port}/readyz")
    if status == 0:
        return ProbeResult(False, f"{host}:{health_port} unreachable")
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    if status != 200:
        failing = [f"{name}: {c.get('reason', '')}" for name, c in checks.items() if not c.get("ok")]
        return ProbeResult(False, "; ".join(failing) or f"/readyz answered {status}", {"checks": checks})
    return ProbeResult(True, "ready", {"checks": checks})


def probe_trainer(host: str, health_port: int, headers: dict[str, str] | None = None) -> ProbeResult:
    """``probe_service``, with the running training job (the trainer's ``GET /status``) in the detail."""
    result = probe_service(host, health_port)
    status, body = http_json(f"http://{host}:{health_port}/status", headers=headers)
    if not result.healthy or status != 200 or not isinstance(body, dict):
        return result
    job = body.get("job")
    if not job:
        return ProbeResult(True, "ready, no training job", {**result.extra, "training": None})
    detail = (
        f"training {job['adapter_id']} ({job['workflow']}): {job['phase']} "
        f"{100 * job['progress']:.0f}%, step {job['step']}/{job['total_steps']}"
    )
    return ProbeResult(True, detail, {**result.extra, "training": job})


def probe_gateway(host: str, health_port: int, headers: dict[str, str] | None = None) -> ProbeResult:
    """``probe_service``, with the rollouts whose route table the router stopped vouching for."""
    result = probe_service(host, health_port)
    status, body = http_json(f"http://{host}:{health_port}/api/v1/routes", headers=headers)
    if not result.healthy or status != 200 or not isinstance(body, dict):
        return result
    stale = body.get("stale") or []
    if not stale:
        return ProbeResult(True, f"ready, {body.get('route_tables', 0)} route tables", result.extra)
    named = ", ".join(
        f"{s['tenant']}/{s['workflow']} ({s['rollout_state']}, {s['age_s']:.0f} s)" for s in stale
    )
    detail = f"ready; STALE routes (no router heartbeat, weights frozen): {named}"
    return ProbeResult(True, detail, {**result.extra, "stale_routes": stale})


def probe_collector(host: str, health_port: int, headers: dict[str, str] | None = None) -> ProbeResult:
    """``probe_service``, with the promoted workflows watched for drift and their latest signals."""
    result = probe_service(host, health_port)
    status, body = http_json(f"http://{host}:{health_port}/api/v1/drift?limit=10", headers=headers)
    if not result.healthy or status != 200 or not isinstance(body, dict):
        return result
    watched, signals = body.get("watched") or [], body.get("signals") or []
    detail = f"ready, {len(watched)} promoted workflows watched for drift"
    if signals:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for s in signals:  # newest first: the first per workflow and signal is the latest
            latest.setdefault((s["workflow"], s["signal"]), s)
        named = ", ".join(f"{wf} {sig} {s['severity']}" for (wf, sig), s in latest.items())
        detail += f"; DRIFT: {named}"
    return ProbeResult(True, detail, {**result.extra, "drift": signals})


def probe_judge(host: str, health_port: int, config: CumulusConfig) -> ProbeResult:
    """``probe_service``, plus the graders calibration flags (poor agreement with reviewers)."""
    result = probe_service(host, health_port)
    report = read_calibration(config) if result.healthy else None
    if report is None:
        return result
    flagged = [f"{g.grader}: {g.note}" for g in report.graders if g.flagged]
    if report.position_flagged:
        flagged.append(f"LLM judge: position consistency {report.position_consistency:.2f}")
    detail = "ready; FLAGGED " + "; ".join(flagged) if flagged else result.detail
    return ProbeResult(True, detail, {**result.extra, "calibration_flags": flagged})


def service_json(service: str, host: str, port: int, path: str, config: CumulusConfig) -> dict[str, Any]:
    """GET a service's JSON endpoint for the CLI (with the operator token); NotReady naming the
    service when it does not answer, Unauthenticated when it refuses the token."""
    from cumulus.errors import Conflict, InvalidArgument, NotFound, NotReady, Unauthenticated

    status, body = http_json(f"http://{host}:{port}{path}", headers=auth_headers(config.state_dir))
    if status in (401, 403) and isinstance(body, dict):
        raise Unauthenticated(
            f"the {service} refused the operator token: {body.get('error')}", fix=body.get("fix")
        )
    if status in (400, 404, 409) and isinstance(body, dict) and "error" in body:
        refused = {404: NotFound, 409: Conflict}.get(status)
        message = f"the {service}: {body['error']}"
        raise refused(message, fix=body.get("fix")) if refused else InvalidArgument("request", message)
    if status != 200 or not isinstance(body, dict):
        raise NotReady(f"the {service} at {host}:{port} did not answer", fix="`cumulus status`")
    return body
