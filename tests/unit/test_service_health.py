import asyncio
import socket
from pathlib import Path

from aiohttp import ClientSession, web

from cumulus.config import CumulusConfig, JudgeConfig
from cumulus.errors import InvalidArgument
from cumulus.logs import get_logger
from cumulus.operators import ensure_dev_operator_token
from cumulus.service import ServiceApi, ServiceContext, _serve, tcp_check


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_readiness_and_metrics_then_clean_stop() -> None:
    port, dead_port = _free_port(), _free_port()
    config = CumulusConfig(judge=JudgeConfig(health_port=port))
    ctx = ServiceContext(name="judge", config=config, log=get_logger("judge"))
    ready_flag = {"ok": False}

    async def main(ctx: ServiceContext) -> None:
        async def flag() -> str | None:
            return None if ready_flag["ok"] else "warming up"

        ctx.readiness["flag"] = flag
        await ctx.stopping.wait()

    task = asyncio.create_task(_serve(ctx, main))
    base = f"http://127.0.0.1:{port}"
    async with ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{base}/healthz") as resp:
                    assert resp.status == 200
                    break
            except OSError:
                await asyncio.sleep(0.02)
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["flag"] == {"ok": False, "reason": "warming up"}
        ready_flag["ok"] = True
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["ready"] is True
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200 and "python_info" in await resp.text()
    ctx.stopping.set()  # what SIGTERM does
    await asyncio.wait_for(task, timeout=5)
    assert await tcp_check("127.0.0.1", dead_port)() is not None


async def test_a_service_mounts_its_own_routes_on_the_health_port(tmp_path: Path) -> None:
    port = _free_port()
    config = CumulusConfig(state_dir=tmp_path, judge=JudgeConfig(health_port=port))
    headers = {"Authorization": f"Bearer {ensure_dev_operator_token(tmp_path)}"}
    ctx = ServiceContext(name="judge", config=config, log=get_logger("judge"))

    def routes(_: ServiceContext, app: web.Application) -> None:
        async def hello(_: web.Request) -> web.Response:
            return web.json_response({"hello": "world"})

        app.router.add_get("/api/v1/hello", hello)

    task = asyncio.create_task(_serve(ctx, lambda ctx: ctx.stopping.wait(), routes))
    async with ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"http://127.0.0.1:{port}/api/v1/hello", headers=headers) as resp:
                    assert await resp.json() == {"hello": "world"}
                    break
            except OSError:
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("the mounted route never answered")
    ctx.stopping.set()
    await asyncio.wait_for(task, timeout=5)


async def test_every_service_api_answers_starting_the_same_way_then_its_worker(tmp_path: Path) -> None:
    """503 with {"error", "fix"} until main attaches the worker; JSON after; errors with their status."""
    port = _free_port()
    config = CumulusConfig(state_dir=tmp_path, judge=JudgeConfig(health_port=port))
    ctx = ServiceContext(name="judge", config=config, log=get_logger("judge"))
    api = ServiceApi[dict[str, int]]("judge")

    async def count(request: web.Request, worker: dict[str, int]) -> dict[str, int]:
        if "bad" in request.query:
            raise InvalidArgument("bad", "not a thing", fix="leave it out")
        return worker

    def routes(_: ServiceContext, app: web.Application) -> None:
        app.router.add_get("/api/v1/count", api.route(count))

    task = asyncio.create_task(_serve(ctx, lambda ctx: ctx.stopping.wait(), routes))
    url = f"http://127.0.0.1:{port}/api/v1/count"
    token = ensure_dev_operator_token(tmp_path)
    async with ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(100):
            try:
                async with http.get(url) as resp:
                    starting = resp.status, await resp.json()
                    break
            except OSError:
                await asyncio.sleep(0.02)
        assert starting == (503, {"error": "the judge is still starting", "fix": "retry in a few seconds"})
        api.attach({"n": 3})
        async with http.get(url) as resp:
            assert (resp.status, await resp.json()) == (200, {"n": 3})
        async with http.get(url, params={"bad": "1"}) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["fix"] == "leave it out" and "bad" in body["error"]
        api.detach()
        async with http.get(url) as resp:
            assert resp.status == 503
    ctx.stopping.set()
    await asyncio.wait_for(task, timeout=5)


async def test_a_check_registered_while_a_probe_is_running_does_not_break_the_probe() -> None:
    """main() adds checks (kafka, progress) at any await; a /readyz in flight must still answer."""
    ctx = ServiceContext(name="judge", config=CumulusConfig(), log=get_logger("judge"))

    async def slow() -> str | None:
        ctx.readiness["kafka"] = slow_kafka  # what KafkaRuntime does while the probe awaits
        return None

    async def slow_kafka() -> str | None:
        return "unreachable"

    ctx.readiness["clickhouse"] = slow
    ready, checks = await ctx.readiness_report()
    assert ready and checks == {"clickhouse": {"ok": True}}
    ready, checks = await ctx.readiness_report()
    assert not ready and checks["kafka"] == {"ok": False, "reason": "unreachable"}
