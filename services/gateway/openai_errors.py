"""Errors of the OpenAI door in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``
with the matching HTTP status, so the official SDKs raise the exception they document
(BadRequestError for 400, AuthenticationError for 401, RateLimitError for 429...).

The status comes from the CumulusError itself (cumulus/errors.py), the same error the gRPC door
turns into a gRPC status (error_mapping.py): one refusal, two spellings. ``x-should-retry`` tells
the SDKs not to retry a refusal that will not change (4xx other than 429).
"""

from __future__ import annotations

import math
import re

from aiohttp import web

from cumulus.errors import CumulusError, InvalidArgument, ResourceExhausted

_TYPES = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}
# The gateway's own request names its sampling fields params.*; OpenAI's are top-level.
_PARAMS_PREFIX = re.compile(r"^params\.")


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict:  # type: ignore[type-arg]
    kind, default_code = _TYPES.get(status, ("server_error", "internal_error"))
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


def openai_error(exc: BaseException) -> web.Response:
    """The response of a failed request: a CumulusError with its status, anything else a 500."""
    if not isinstance(exc, CumulusError):
        return _response(500, error_body(500, "internal error (logged by the gateway)"))
    param = _PARAMS_PREFIX.sub("", exc.field) if isinstance(exc, InvalidArgument) else None
    message = exc.message + (f" (fix: {exc.fix})" if exc.fix else "")
    status = exc.http_status
    headers = {}
    if isinstance(exc, ResourceExhausted):
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after_s)))
        headers["retry-after-ms"] = str(max(1, round(exc.retry_after_s * 1000)))
    return _response(status, error_body(status, message, param=param), headers)


def refusal(status: int, message: str, *, param: str | None = None, code: str | None = None) -> web.Response:
    """An error the HTTP layer itself finds (malformed JSON, too large a body, unknown path)."""
    return _response(status, error_body(status, message, param=param, code=code))


def _response(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:  # type: ignore[type-arg]
    retry = "true" if status in (429, 503) or status >= 500 else "false"
    return web.json_response(body, status=status, headers={"x-should-retry": retry, **(headers or {})})
