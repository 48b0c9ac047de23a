"""The OpenAI-compatible HTTP front door: ``POST /v1/chat/completions``, ``GET /v1/models`` and
``POST /v1/feedback``, on ``gateway.http_port`` in the gateway's own process and event loop.

An application switches to Cumulus by changing its client's ``base_url`` (``http://HOST:PORT/v1``)
and key. Requests go through the same core as gRPC's (admit.py, the Dispatcher): the same keys,
quotas, validation, workflows, routes, shadow copies, capture and feedback; only the wire format
differs (openai_schema.py in, openai_answers.py / openai_stream.py out, openai_errors.py for
refusals). The key is checked before the body is read, and a body larger than
``gateway.max_message_bytes`` is refused (413) before it is read in full.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cumulus.errors import CumulusError, InvalidArgument, NotFound
from cumulus.logs import get_logger
from cumulus.v1 import gateway_pb2
from services.gateway.admit import accept_feedback, admit_chat
from services.gateway.core import GatewayCore
from services.gateway.openai_answers import completion, headers
from services.gateway.openai_errors import openai_error, refusal
from services.gateway.openai_schema import parse_chat
from services.gateway.openai_stream import stream_completion

log = get_logger("gateway")
_COMPLETION_PREFIX = "chatcmpl-"


class OpenAIDoor:
    """The HTTP server of the OpenAI door (see the module docstring)."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.max_body = core.config.gateway.max_message_bytes
        self.max_in_flight = core.config.gateway.max_concurrent_rpcs
        self.in_flight = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/v1/chat/completions", self._guarded(self.chat))
        app.router.add_get("/v1/models", self._guarded(self.models))
        app.router.add_post("/v1/feedback", self._guarded(self.feedback))
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        tls = self.core.config.gateway_server_tls  # the gRPC port's certificates, and its mutual TLS
        site = web.TCPSite(self._runner, host, port, ssl_context=tls.ssl_context() if tls else None)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        mode = "off" if tls is None else ("mutual" if tls.client_ca_file else "server")
        log.info("http.serving", host=host, port=self.port, api="openai", tls=mode)

    async def stop(self, grace_s: float) -> None:
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()

    def model_ids(self) -> list[str]:
        """What ``model`` may name: the live model, by its name or as ``live``; routing is by workflow."""
        return list(dict.fromkeys(("live", self.core.config.triton.live_model)))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        body = await self._json(request)
        generate, options = parse_chat(body, {k.lower(): v for k, v in request.headers.items()})
        if options.model not in self.model_ids():
            raise NotFound(
                f"model {options.model!r} does not exist here",
                fix=f"use one of {', '.join(self.model_ids())}",
            )
        api = "openai_stream" if options.stream else "openai"
        timeout_s = self.core.timeout_s(None)
        call = admit_chat(self.core, tenant, generate, api=api, stream=options.stream, timeout_s=timeout_s)
        answers = self.core.dispatcher.run(call)
        if options.stream:
            return await stream_completion(request, call, options, answers)
        async for _ in answers:
            pass
        return web.json_response(completion(call, options), headers=headers(call))

    async def models(self, request: web.Request) -> web.StreamResponse:
        self._tenant(request)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "cumulus"} for m in self.model_ids()]
        return web.json_response({"object": "list", "data": data})

    async def feedback(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise InvalidArgument("body", "must be a JSON object")
        fields: dict[str, Any] = {}
        for name, kind in (("request_id", str), ("label", str), ("correction", str), ("comment", str)):
            value = body.get(name)
            if value is not None and not isinstance(value, kind):
                raise InvalidArgument(name, "must be a string")
            if value:
                fields[name] = value
        score = body.get("score")
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise InvalidArgument("score", "must be a number in [0, 1]")
            fields["score"] = float(score)
        fields["request_id"] = fields.get("request_id", "").removeprefix(_COMPLETION_PREFIX)
        event_id = accept_feedback(self.core, tenant, gateway_pb2.FeedbackRequest(**fields))
        return web.json_response({"event_id": event_id})

    def _tenant(self, request: web.Request) -> str:
        return self.core.auth.tenant_for_metadata(list(request.headers.items()))

    async def _json(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > self.max_body:
            raise _TooLarge(request.content_length, self.max_body)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise _TooLarge(None, self.max_body) from exc
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                "body", f"invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise InvalidArgument("body", f"not UTF-8 at byte {exc.start}") from exc

    def _guarded(self, handler: Any) -> Any:
        """At most ``gateway.max_concurrent_rpcs`` requests at once (as the gRPC port); every failure
        as an OpenAI error body; a client gone mid-stream needs no answer."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.in_flight >= self.max_in_flight:
                limit = f"{self.max_in_flight} requests in flight (gateway.max_concurrent_rpcs)"
                return refusal(503, f"the gateway is serving {limit}; retry shortly", code="overloaded")
            self.in_flight += 1
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except _TooLarge as exc:
                return refusal(413, exc.message, code="request_too_large")
            except CumulusError as exc:
                return openai_error(exc)
            except ConnectionResetError:
                return web.Response(status=499)  # nobody reads it; the event says CANCELLED
            except Exception as exc:
                log.exception("http.failed", path=request.path)
                return openai_error(exc)
            finally:
                self.in_flight -= 1

        return guarded


class _TooLarge(CumulusError):
    http_status = 413

    def __init__(self, size: int | None, limit: int) -> None:
        got = f"{size} bytes" if size is not None else "a body"
        super().__init__(f"{got} exceed the limit of {limit} bytes (gateway.max_message_bytes)")
