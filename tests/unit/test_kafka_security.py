"""Kafka logins and grants: who logs in as whom, and the ACLs match what each service consumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulus.config import CumulusConfig
from cumulus.errors import ConfigError
from cumulus.kafka import security, topics
from ops.stack import kafka_secure
from ops.stack.kafka import BrokerLayout, render_server_properties
from services.collector.rows import CAPTURES
from services.judge.handler import subscription as judge_subscription
from services.router.handler import subscription as router_subscription
from services.trainer.handler import subscription as trainer_subscription


def test_plaintext_unless_configured_or_the_local_stack_is_secure(tmp_path: Path) -> None:
    config = CumulusConfig(state_dir=tmp_path)
    assert security.security_for(config, "gateway").client_kwargs() == {}
    security.local_secure_marker(tmp_path).parent.mkdir(parents=True)
    security.local_secure_marker(tmp_path).write_text("SASL_SSL\n")
    with pytest.raises(ConfigError, match="password of principal 'gateway'"):
        security.security_for(config, "gateway")  # secure, but no credentials yet
    kafka_secure.ensure_credentials(tmp_path)
    login = security.security_for(config, "gateway")
    kwargs = login.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "gateway" and kwargs["sasl_plain_password"]
    assert (security.credentials_dir(tmp_path) / "gateway").stat().st_mode & 0o777 == 0o600
    assert security.security_for(config, "judge").password != login.password  # one secret per principal


def test_the_grants_cover_what_each_service_consumes_and_no_more() -> None:
    config = CumulusConfig()
    consumed = {
        "judge": set(judge_subscription(config.judge).topics),
        "router": set(router_subscription(config.router).topics),
        "trainer": set(trainer_subscription(config).topics),
        "collector": set(CAPTURES),
    }
    for principal, names in consumed.items():
        assert names <= {spec.name for spec in security.ACCESS[principal].reads}, principal
    assert {spec.name for spec in security.ACCESS["gateway"].reads} == {topics.ROUTES.name}
    # Commands only from the operators' principal; route tables only from the router.
    writers = {p: {spec.name for spec in a.writes} for p, a in security.ACCESS.items()}
    assert [p for p, w in writers.items() if topics.COMMANDS.name in w] == ["cli"]
    assert [p for p, w in writers.items() if topics.ROUTES.name in w] == ["router"]
    assert [p for p, w in writers.items() if topics.DRIFT.name in w] == ["collector"]
    entries = kafka_secure.acl_entries(config)
    assert (3, config.collector.capture.group_id, "User:collector", 3) in entries  # its group, Read
    assert not [e for e in entries if e[2] == "User:gateway" and e[0] == 3]  # no group for the gateway


def test_the_secure_broker_listens_sasl_ssl_and_denies_by_default(tmp_path: Path) -> None:
    layout = BrokerLayout.from_config(tmp_path, CumulusConfig().kafka, libs_dir=tmp_path, secure=True)
    rendered = render_server_properties(
        layout, CumulusConfig().kafka, kafka_secure.secure_properties(layout, tmp_path)
    )
    props = dict(line.split("=", 1) for line in rendered.splitlines() if line and not line.startswith("#"))
    assert props["listeners"].startswith("SASL_SSL://127.0.0.1:") and "PLAINTEXT" not in props["listeners"]
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["log.dirs"].endswith("data-secure")
    keystore = Path(props["ssl.keystore.location"])
    assert keystore.stat().st_mode & 0o777 == 0o600 and "PRIVATE KEY" in keystore.read_text()
    args = kafka_secure.scram_format_args(tmp_path)
    assert args.count("--add-scram") == len(security.PRINCIPALS)
