"""``GET /api/v1/routes`` on the gateway's health port: the route tables it serves and the stale ones.

A stale table is a rollout's table the router has not re-published within
``gateway.route_max_age_s`` (services/gateway/routes.py): the router is down or cut off, so no
gate watches that rollout. `cumulus status` shows them beside the gateway.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from cumulus.service import RouteSetup, ServiceApi, ServiceContext
from services.gateway.routes import RouteBook

API = ServiceApi[RouteBook]("gateway")


def describe(book: RouteBook) -> dict[str, Any]:
    """How many tables are in force, and each stale one with its age."""
    return {
        "route_tables": len(book),
        "max_age_s": book.max_age_ns / 1e9,
        "stale": [asdict(route) for route in book.stale()],
    }


def mount(api: ServiceApi[RouteBook]) -> RouteSetup:
    """The route setup for ``run_service``."""

    async def routes(_: web.Request, book: RouteBook) -> dict[str, Any]:
        return describe(book)

    def setup(_: ServiceContext, app: web.Application) -> None:
        app.router.add_get("/api/v1/routes", api.route(routes))

    return setup
