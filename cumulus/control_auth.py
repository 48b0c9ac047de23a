"""The control plane's guard: every service HTTP route but health, readiness and metrics needs a token.

An aiohttp middleware on each service's one HTTP app (cumulus/service.py). It answers, before any
handler runs:

- 401 without ``Authorization: Bearer <token>``, or with a token nobody issued;
- 403 when the token's scope is too small: GET needs ``read``, anything else ``operator``
  (cumulus/operators.py);
- 415 for a POST/PUT/PATCH whose body is not ``application/json`` (a browser's cross-site form
  cannot send that without a CORS preflight, which these APIs never grant);
- a tenant's API key may GET only the tenant-filtered reads (``TENANT_READS``), and the request's
  ``tenant`` is forced to the key's own: another tenant's name is 403, none means its own.

Open: ``/healthz``, ``/readyz``, ``/metrics`` (probes and Prometheus) and the dashboard's HTML
shell, which holds no data (its script fetches the APIs with the token given in the URL fragment).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from cumulus.apikeys import ApiKeyStore, bearer_key
from cumulus.operators import SCOPES, token_scope

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/dashboard"})
TENANT_READS = re.compile(r"^/api/v1/workflows(/[^/]+/series)?$")
"""Routes that filter by the ``tenant`` query parameter: the only ones a tenant key may read."""
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOW = (
    "send `Authorization: Bearer <token>`: `cumulus up` writes one to <state_dir>/operator-token, "
    "or set CUMULUS_OPERATOR_TOKEN"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refuse(status: int, error: str, fix: str) -> web.Response:
    return web.json_response({"error": error, "fix": fix}, status=status)


def control_plane_guard(state_dir: Path, api_keys_file: Path) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware (see the module docstring) for tokens under ``state_dir``."""
    keys = ApiKeyStore(api_keys_file)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        token = bearer_key(request.headers.items())
        if not token:
            return _refuse(401, "missing operator token", _HOW)
        write = request.method in _WRITES
        if write and request.content_type != "application/json":
            return _refuse(415, f"{request.method} needs Content-Type: application/json", "send a JSON body")
        scoped = token_scope(state_dir, token)
        if scoped is not None:
            needed = "operator" if write else "read"
            if SCOPES.index(scoped[0]) < SCOPES.index(needed):
                return _refuse(403, f"token {scoped[1]!r} has scope {scoped[0]!r}; this needs {needed!r}",
                               "use a token with a larger scope")  # fmt: skip
            return await handler(request)
        tenant = keys.tenant_for(token)
        if tenant is None:
            return _refuse(401, "unknown token", "use an operator token or your tenant's API key")
        if write or not TENANT_READS.match(request.path):
            return _refuse(403, "a tenant API key reads only its own workflows (/api/v1/workflows)",
                           "use an operator token")  # fmt: skip
        asked = request.query.get("tenant", "")
        if asked and asked != tenant:
            return _refuse(403, f"this key is tenant {tenant!r}'s, not {asked!r}'s", "use that tenant's key")
        return await handler(request.clone(rel_url=request.rel_url.update_query(tenant=tenant)))

    return guard
