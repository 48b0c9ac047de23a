"""`cumulus keys`: issue, list, rotate with a grace period, revoke, expiry; the gateway follows at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumulus.apikeys import ApiKeyStore
from cumulus.errors import InvalidArgument
from cumulus.operators import token_scope
from ops.cli.key_cmds import duration_s
from ops.cli.main import main
from services.gateway.auth import Authenticator


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CUMULUS_STATE_DIR", str(tmp_path))
    return tmp_path


def issued(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["keys", "issue", *args]) == 0
    return capsys.readouterr().out.split(": ", 1)[1].split()[0]


def listed(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["keys", "list", "--json"]) == 0
    return list(json.loads(capsys.readouterr().out)["keys"])


def test_issue_list_rotate_revoke(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    auth = Authenticator(state / "api-keys.json")
    key = issued(capsys, "--tenant", "acme")
    token = issued(capsys, "--operator", "ann", "--scope", "operator", "--ttl", "30d")
    assert auth.tenant_for_metadata((("authorization", f"Bearer {key}"),)) == "acme"
    assert token_scope(state, token) == ("operator", "ann")
    rows = listed(capsys)
    assert {(r["kind"], r["owner"]) for r in rows} == {
        ("api key", "acme"),
        ("operator token", "operator:ann"),
    }
    assert key not in json.dumps(rows) and token not in json.dumps(rows)  # ids only, never the key
    (old,) = [r["id"] for r in rows if r["owner"] == "acme"]

    assert main(["keys", "rotate", old, "--grace", "0"]) == 0
    new = capsys.readouterr().out.split("new api key: ")[1].split()[0]
    assert auth.tenant_for_metadata((("authorization", f"Bearer {new}"),)) == "acme"
    with pytest.raises(Exception, match="unknown API key"):  # grace 0: the old one ended at once
        auth.tenant_for_metadata((("authorization", f"Bearer {key}"),))

    ann = next(r["id"] for r in listed(capsys) if r["owner"] == "operator:ann")
    assert main(["keys", "revoke", ann]) == 0
    assert token_scope(state, token) is None
    assert main(["keys", "revoke", "nothing"]) == 1


def test_an_expired_key_stops_even_when_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    key = store.issue("acme", ttl_s=60)
    auth = Authenticator(tmp_path / "keys.json")
    assert auth.tenant_for_metadata((("authorization", f"Bearer {key}"),)) == "acme"
    later = __import__("time").time() + 61
    monkeypatch.setattr("services.gateway.auth.time.time", lambda: later)
    with pytest.raises(Exception, match="unknown API key"):
        auth.tenant_for_metadata((("authorization", f"Bearer {key}"),))


def test_an_old_key_file_still_reads(tmp_path: Path) -> None:
    from cumulus.apikeys import hash_key

    (tmp_path / "keys.json").write_text(json.dumps({hash_key("cmk_old"): "acme"}))
    assert ApiKeyStore(tmp_path / "keys.json").tenant_for("cmk_old") == "acme"


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("90m", 5400), ("12h", 43200), ("30d", 2592000)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_s(text, "--ttl") == seconds
    with pytest.raises(InvalidArgument, match="--ttl"):
        duration_s("soon", "--ttl")
