"""The local stack: Kafka, Triton and every service as background processes on loopback.

``up`` starts them in dependency order and waits until each is healthy; any failure stops what
this call started (no orphans) and reports the failing component's log tail. ``down`` stops
exactly the processes recorded in the pid files, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from cumulus.apikeys import ensure_dev_key
from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError, StackError
from cumulus.kafka import admin, security, topics
from cumulus.operators import auth_headers, ensure_dev_operator_token
from cumulus.tls import DEFAULT_HOSTS
from ops.stack import kafka as kafka_stack
from ops.stack import kafka_secure
from ops.stack.probes import (
    ProbeResult,
    port_open,
    probe_collector,
    probe_gateway,
    probe_judge,
    probe_kafka,
    probe_service,
    probe_trainer,
    probe_triton,
)
from ops.stack.processes import ProcessTable

SERVICES = ("gateway", "collector", "trainer", "judge", "router")
COMPONENTS = ("kafka", "triton", *SERVICES)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    host: str
    ports: tuple[int, ...]
    endpoint: str
    ready_timeout_s: float


class LocalStack:
    def __init__(self, config: CumulusConfig, progress: Callable[[str], None] = print) -> None:
        self.config = config
        self.state_dir = config.state_dir.resolve()
        self.table = ProcessTable(self.state_dir)
        self.progress = progress
        self.kafka_layout = self._broker_layout()
        self.dev_key = ""

    def _broker_layout(self) -> kafka_stack.BrokerLayout:
        secure = security.local_secure_marker(self.state_dir).exists()  # what `up --secure` left
        return kafka_stack.BrokerLayout.from_config(self.state_dir, self.config.kafka, secure=secure)

    def _as_admin(self) -> contextlib.AbstractContextManager[None]:
        """The stack's own Kafka calls (readiness, topics, grants) run as the super user when secure."""
        if not self.kafka_layout.secure:
            return contextlib.nullcontext()
        return security.using(kafka_secure.admin_security(self.state_dir))

    # -- what the stack is made of -------------------------------------------------------------
    def spec(self, name: str) -> ComponentSpec:
        cfg = self.config
        if name == "kafka":
            layout = self.kafka_layout
            return ComponentSpec(
                name, layout.host, (layout.port, layout.controller_port), f"{layout.host}:{layout.port}", 90
            )
        if name == "triton":
            t = cfg.triton
            # First start converts the models into the cache, which takes minutes on 2 cores.
            return ComponentSpec(
                name, t.host, (t.http_port, t.grpc_port, t.metrics_port), f"grpc://{t.grpc_url}", 900
            )
        svc = getattr(cfg, name)
        gateway_ports = (svc.health_port, cfg.gateway.grpc_port, cfg.gateway.http_port)
        ports = tuple(p for p in gateway_ports if p) if name == "gateway" else (svc.health_port,)
        scheme = "grpc" if cfg.gateway_server_tls is None else "grpcs"
        endpoint = (
            f"{scheme}://{svc.host}:{cfg.gateway.grpc_port}"
            if name == "gateway"
            else f"http://{svc.host}:{svc.health_port}"
        )
        return ComponentSpec(name, svc.host, ports, endpoint, 60)

    def probe(self, name: str) -> ProbeResult:
        spec = self.spec(name)
        if name == "kafka":
            return probe_kafka(spec.host, spec.ports[0])
        if name == "triton":
            return probe_triton(spec.host, self.config.triton.http_port, tuple(self.config.served_models))
        if name == "trainer":
            headers = auth_headers(self.config.state_dir)
            return probe_trainer(spec.host, self.config.trainer.health_port, headers)
        if name == "gateway":
            headers = auth_headers(self.config.state_dir)
            return probe_gateway(spec.host, self.config.gateway.health_port, headers)
        if name == "collector":
            headers = auth_headers(self.config.state_dir)
            return probe_collector(spec.host, self.config.collector.health_port, headers)
        if name == "judge":
            return probe_judge(spec.host, self.config.judge.health_port, self.config)
        return probe_service(spec.host, getattr(self.config, name).health_port)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CUMULUS_STATE_DIR"] = str(self.state_dir)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- commands --------------------------------------------------------------------------------
    def up(self, tls: str = "off", secure: bool = False) -> dict[str, str]:
        """Start everything; returns component → endpoint. Raises StackError on any failure.

        ``tls`` (off | tls | mtls) is how the gateway's gRPC port is served; ``secure`` runs Kafka
        with SASL_SSL and ACLs (ops/stack/kafka_secure.py). Both choices stay with the state dir,
        so later clients of this stack (the demo, the CLI) speak the same."""
        self._preflight()
        marker = security.local_secure_marker(self.state_dir)
        if secure:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("SASL_SSL\n")
        else:
            marker.unlink(missing_ok=True)
        self.kafka_layout = self._broker_layout()
        names = dict.fromkeys((*DEFAULT_HOSTS, self.config.gateway.host))
        hosts = tuple(h for h in names if h not in ("0.0.0.0", "::"))
        self.config.local_pki.set_mode(tls, hosts)
        # Written before the gateway starts, so its first request can already authenticate.
        self.dev_key = ensure_dev_key(self.state_dir)
        ensure_dev_operator_token(self.state_dir)  # for the CLI, the demo and the dashboard
        started: list[str] = []
        try:
            with self._as_admin():
                for name in COMPONENTS:
                    self.progress(f"starting {name} ...")
                    t0 = time.monotonic()
                    self._start(name)
                    started.append(name)
                    self._wait_healthy(name)
                    if name == "kafka":
                        created = self._create_topics()
                        self.progress(f"  topics: {len(topics.ALL_TOPICS)} ({len(created)} created)")
                        if self.kafka_layout.secure:
                            admin = kafka_secure.admin_security(self.state_dir)
                            granted = asyncio.run(
                                kafka_secure.grant(self.kafka_layout.bootstrap, self.config, admin)
                            )
                            self.progress(f"  SASL_SSL, {len(security.ACCESS)} principals, {granted} ACLs")
                    self.progress(f"  {name} healthy in {time.monotonic() - t0:.1f}s")
        except BaseException:
            for name in reversed(started):
                self.table.stop(name, grace_s=10)
            raise
        # This process's own clients (the demo's) now reach the broker as the stack serves it.
        security.configure(security.security_for(self.config, "cli"))
        return {name: self.spec(name).endpoint for name in COMPONENTS}

    def restart(self, name: str) -> str:
        """Stop one component (if running) and start it again; returns its endpoint once healthy."""
        if name not in COMPONENTS:
            raise StackError(f"unknown component {name!r}", fix=f"use one of: {', '.join(COMPONENTS)}")
        self.table.stop(name)
        spec = self.spec(name)
        for port in spec.ports:
            if port_open(spec.host, port):
                raise StackError(f"port {spec.host}:{port} of {name} is still in use{_holder(port)}")
        with self._as_admin():
            self._start(name)
            self._wait_healthy(name)
        return spec.endpoint

    def down(self) -> list[str]:
        """Stop every recorded process, services first; returns the names that were running."""
        stopped = []
        recorded = self.table.records()
        for name in [*reversed(COMPONENTS), *sorted(set(recorded) - set(COMPONENTS))]:
            if name in recorded and self.table.stop(name):
                stopped.append(name)
        return stopped

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name in COMPONENTS:
            record = self.table.get(name)
            proc = record.process() if record else None
            result = self.probe(name)
            out[name] = {
                "healthy": bool(proc is not None and result.healthy),
                "running": proc is not None,
                "pid": proc.pid if proc else None,
                "endpoint": self.spec(name).endpoint,
                "detail": result.detail if proc else "not started by this stack",
                **result.extra,
            }
        return out

    # -- internals -------------------------------------------------------------------------------
    def _preflight(self) -> None:
        running = [name for name in COMPONENTS if self.table.alive(name)]
        if running:
            raise StackError(
                f"a stack is already running from {self.state_dir} ({', '.join(running)})",
                fix="`cumulus status` to inspect it, or `cumulus down` to stop it first",
            )
        for name in self.table.records():
            self.table.stop(name)  # stale pid files of a crashed stack: clear them
        for name in COMPONENTS:
            spec = self.spec(name)
            for port in spec.ports:
                if port_open(spec.host, port):
                    raise StackError(
                        f"port {spec.host}:{port} needed by {name} is already in use{_holder(port)}",
                        fix="stop that process, or move the component to another port in cumulus.yaml",
                    )

    def _start(self, name: str) -> None:
        if name == "kafka":
            layout = self.kafka_layout
            kafka_stack.ensure_jars(layout.libs_dir)
            overrides = kafka_secure.secure_properties(layout, self.state_dir) if layout.secure else None
            kafka_stack.write_server_properties(layout, self.config.kafka, overrides)
            scram = kafka_secure.scram_format_args(self.state_dir) if layout.secure else []
            kafka_stack.format_storage(layout, extra_args=scram)
            argv = kafka_stack.broker_command(layout, self.config.kafka)
            self.table.start(name, argv, env=kafka_stack.broker_env(self.child_env()))
        elif name == "triton":
            self.table.start(
                name, [sys.executable, "-m", "services.inference"], env=self.child_env(), cwd=REPO_ROOT
            )
        else:
            self.table.start(
                name, [sys.executable, "-m", f"services.{name}"], env=self.child_env(), cwd=REPO_ROOT
            )

    def _wait_healthy(self, name: str) -> None:
        spec = self.spec(name)
        deadline = time.monotonic() + spec.ready_timeout_s
        result = ProbeResult(False, "not probed yet")
        while time.monotonic() < deadline:
            if not self.table.alive(name):
                raise StackError(
                    f"{name} exited during start; last log lines:\n{self.table.tail(name)}",
                    fix=f"see {self.table.log_path(name)}",
                )
            result = self.probe(name)
            if result.healthy:
                return
            time.sleep(0.5)
        raise StackError(
            f"{name} not healthy after {spec.ready_timeout_s:.0f}s ({result.detail}); last log lines:\n"
            f"{self.table.tail(name)}",
            fix=f"see {self.table.log_path(name)}",
        )

    def _create_topics(self) -> list[str]:
        cfg = self.config.kafka
        try:
            return asyncio.run(
                admin.ensure_topics(
                    self.kafka_layout.bootstrap, topics.ALL_TOPICS, cfg.partitions, cfg.replication_factor
                )
            )
        except CumulusError:
            raise
        except Exception as exc:
            raise StackError(f"creating topics failed: {exc}") from exc


def _holder(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f" by pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return ""
