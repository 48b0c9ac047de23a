"""Operator tokens: who may read and change the control plane (the services' HTTP APIs).

Three scopes, each including the ones before it: ``read`` (every GET), ``operator`` (also POST,
e.g. nominating a workflow) and ``admin``. Tokens live hashed in ``<state_dir>/operator-tokens.json``
(same format as the API keys, cumulus/apikeys.py); `cumulus up` issues the local stack's admin
token into ``<state_dir>/operator-token`` (0600), which the CLI and the demo send. A client may
instead set ``CUMULUS_OPERATOR_TOKEN``. A tenant's API key is accepted too, for reading its own
tenant's workflows only (see cumulus/control_auth.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cumulus.apikeys import ApiKeyStore, write_private

TOKEN_PREFIX = "cmo_"
SCOPES = ("read", "operator", "admin")
TOKEN_ENV = "CUMULUS_OPERATOR_TOKEN"
TOKENS_FILE = "operator-tokens.json"
DEV_TOKEN_FILE = "operator-token"


def token_store(state_dir: Path) -> ApiKeyStore:
    return ApiKeyStore(state_dir / TOKENS_FILE, prefix=TOKEN_PREFIX)


def issue_token(state_dir: Path, name: str, scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    return token_store(state_dir).issue(f"{scope}:{name}")


def _scope_and_name(owner: str) -> tuple[str, str] | None:
    """A token record's owner ``<scope>:<name>`` split, None when the scope is unknown."""
    scope, _, name = owner.partition(":")
    return (scope, name) if scope in SCOPES else None


def token_scope(state_dir: Path, token: str) -> tuple[str, str] | None:
    """(scope, name) of a valid operator token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    value = token_store(state_dir).tenant_for(token)
    return None if value is None else _scope_and_name(value)


def token_by_id(state_dir: Path, key_id: str) -> tuple[str, str] | None:
    """(scope, name) of the valid operator token whose id is ``key_id``, else None."""
    now = time.time()
    for record in token_store(state_dir).records():
        if record.key_id == key_id and record.valid(now):
            return _scope_and_name(record.owner)
    return None


def token_identity(state_dir: Path, token: str) -> tuple[str, str, str] | None:
    """(key_id, scope, name) of a valid operator token, else None: who sends a command."""
    record = token_store(state_dir).lookup(token) if token.startswith(TOKEN_PREFIX) else None
    if record is None or not record.valid(time.time()):
        return None
    scoped = _scope_and_name(record.owner)
    return None if scoped is None else (record.key_id, *scoped)


def ensure_dev_operator_token(state_dir: Path) -> str:
    """The local stack's admin token, reused from ``<state_dir>/operator-token`` while valid."""
    path = state_dir / DEV_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token_scope(state_dir, token) == ("admin", "dev"):
            return token
    token = issue_token(state_dir, "dev", "admin")
    write_private(path, token + "\n")
    return token


def client_token(state_dir: Path) -> str | None:
    """The token a client (CLI, demo) sends: ``CUMULUS_OPERATOR_TOKEN``, else the dev token file."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    try:
        return (state_dir / DEV_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def auth_headers(state_dir: Path) -> dict[str, str]:
    token = client_token(state_dir)
    return {"Authorization": f"Bearer {token}"} if token else {}
