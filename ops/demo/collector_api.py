"""The two things the demo asks the collector's read API: nominate by hand, and what it learned.

The demo decides nothing from these answers; they go into the report (the learning curve, the
retry the collector plans for a rejected workflow, its data-sufficiency estimate).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.operators import auth_headers


def _base(config: CumulusConfig) -> str:
    return f"http://{config.collector.host}:{config.collector.health_port}/api/v1"


async def nominate(config: CumulusConfig, tenant: str, workflow: str) -> None:
    body = json.dumps({"tenant": tenant, "reason": "cumulus demo"}).encode()
    url = f"{_base(config)}/workflows/{workflow}/nominate"
    request = urllib.request.Request(
        url, body, {"content-type": "application/json", **auth_headers(config.state_dir)}
    )
    await asyncio.to_thread(urllib.request.urlopen, request, timeout=120)


async def learned(config: CumulusConfig, tenant: str, workflow: str) -> dict[str, Any]:
    """This workflow's learning curve points, waiting reasons and sufficiency estimate."""

    def fetch() -> dict[str, Any]:
        request = urllib.request.Request(
            f"{_base(config)}/candidates", headers=auth_headers(config.state_dir)
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(json.load(response))

    body = await asyncio.to_thread(fetch)

    def mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r.get("tenant") == tenant and r.get("workflow") == workflow]

    return {
        "learning_curves": mine(body.get("learning_curves", [])),
        "waiting": mine(body.get("waiting", [])),
        "sufficiency": mine(body.get("sufficiency", [])),
    }
