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


def token_scope(state_dir: Path, token: str) -> tuple[str, str] | None:
    """(scope, name) of a valid operator token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    value = token_store(state_dir).tenant_for(token)
    if value is None:
        return None
    scope, _, name = value.partition(":")
    return (scope, name) if scope in SCOPES else None


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
