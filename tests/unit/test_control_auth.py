"""The control plane's guard on a real aiohttp server: tokens, scopes, tenant keys, content types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from cumulus.apikeys import ApiKeyStore
from cumulus.control_auth import control_plane_guard
from cumulus.operators import issue_token


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "tenant": request.query.get("tenant", "")})

    app = web.Application(middlewares=[control_plane_guard(tmp_path, tmp_path / "api-keys.json")])
    for path in (
        "/healthz",
        "/metrics",
        "/api/v1/workflows",
        "/api/v1/workflows/w/series",
        "/api/v1/candidates",
    ):
        app.router.add_get(path, echo)
    app.router.add_post("/api/v1/workflows/w/nominate", echo)
    tokens = {scope: issue_token(tmp_path, f"ann-{scope}", scope) for scope in ("read", "operator")}
    tokens["acme"] = ApiKeyStore(tmp_path / "api-keys.json").issue("acme")
    async with TestServer(app) as server:
        yield str(server.make_url("")), tokens


async def call(base: str, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as http, http.request(method, base + path, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_health_and_metrics_stay_open_and_everything_else_needs_a_token(api: tuple[str, dict]) -> None:
    base, tokens = api
    assert (await call(base, "GET", "/healthz"))[0] == 200 and (await call(base, "GET", "/metrics"))[0] == 200
    status, body = await call(base, "GET", "/api/v1/candidates")
    assert status == 401 and "missing operator token" in body["error"] and "operator-token" in body["fix"]
    assert (await call(base, "GET", "/api/v1/candidates", "cmo_made-up"))[0] == 401
    assert (await call(base, "GET", "/api/v1/candidates", tokens["read"]))[0] == 200


async def test_writes_need_the_operator_scope_and_a_json_body(api: tuple[str, dict]) -> None:
    base, tokens = api
    nominate = "/api/v1/workflows/w/nominate"
    status, body = await call(base, "POST", nominate, tokens["read"], json={})
    assert status == 403 and "scope 'read'" in body["error"]
    status, body = await call(base, "POST", nominate, tokens["operator"], data="tenant=acme")  # a form
    assert status == 415 and "application/json" in body["error"]
    assert (await call(base, "POST", nominate, tokens["operator"], json={}))[0] == 200


async def test_a_tenant_key_reads_its_own_workflows_and_nothing_else(api: tuple[str, dict]) -> None:
    base, tokens = api
    key = tokens["acme"]
    assert await call(base, "GET", "/api/v1/workflows", key) == (
        200,
        {"path": "/api/v1/workflows", "tenant": "acme"},
    )
    assert (await call(base, "GET", "/api/v1/workflows/w/series?tenant=acme", key))[1]["tenant"] == "acme"
    status, body = await call(base, "GET", "/api/v1/workflows?tenant=globex", key)
    assert status == 403 and "not 'globex'" in body["error"]
    assert (await call(base, "GET", "/api/v1/candidates", key))[0] == 403  # every tenant's: operators only
    assert (await call(base, "POST", "/api/v1/workflows/w/nominate", key, json={}))[0] == 403
