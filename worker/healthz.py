"""``GET /healthz`` of our HTTP services (the webhook receiver, the console): 200 when the state
Redis answers, else 503 naming the error's class; no login, for compose's healthchecks."""

from __future__ import annotations

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def healthz_route(state: redis.Redis) -> Route:
    async def healthz(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(state.ping)
        except redis.RedisError as exc:
            return JSONResponse({"ok": False, "redis": type(exc).__name__}, status_code=503)
        return JSONResponse({"ok": True})

    return Route("/healthz", healthz, methods=["GET"])
