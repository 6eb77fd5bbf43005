"""The webhook receiver: Z-API's callbacks in, the order book and delivery states updated.

``zapi-queue webhook`` serves it with uvicorn (Starlette app):

* ``POST /webhooks/zapi/{secret}``: every callback type Z-API sends. Z-API does not sign its
  webhooks, so the secret path segment (``ZAPI_WEBHOOK_SECRET``) is the credential: compared in
  constant time; a wrong one answers 404 and stores nothing. Not JSON (nested too deeply for
  the parser included), or not an object: 400; over ``MAX_BODY`` (1 MiB): 413; a body slower
  than ``ZAPI_WEBHOOK_BODY_TIMEOUT``: 408; an order we cannot keep: 400 naming its fields; any
  other callback 200 (tasks/inbox.py says what it changed, or why nothing); Redis
  unavailable: 503 (the callback is not lost if Z-API tries again; applying it twice changes
  nothing). Whatever the body, never a 500.
* ``GET /healthz``: 200 when Redis answers, else 503.

It writes to Redis only (tasks/inbox.py decides what), keeps no state of its own, and may run
as many replicas as wanted. Uvicorn's access log is off (it would print the secret with the
path); each callback is logged in one line with its type, outcome and time, and no phone.
Z-API only calls HTTPS URLs: run it behind a TLS-terminating proxy (docs/webhooks.md).

uvicorn's limits (``serve``): ``ZAPI_WEBHOOK_CONCURRENCY`` connections and requests at once
(503 past it), idle connections closed after ``ZAPI_WEBHOOK_KEEP_ALIVE`` s, request line and
headers at most ``MAX_HEADER`` bytes (h11, 400 past it). uvicorn has no timeout for reading a
request's headers (its keep-alive timer stops when the first byte arrives): the proxy's is the
one (nginx ``client_header_timeout``, 60 s by default); the body's is ours.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from config import ConfigurationError, Settings
from tasks import tracing
from tasks.callbacks import callback_type
from tasks.contract.redaction import redact
from tasks.inbox import Inbox, Outcome, fleet_instance_ids
from tasks.state.store import connect
from worker.healthz import healthz_route
from worker.http_server import run
from worker.tracing_setup import start_tracing, stop_tracing
from worker.webhook_url import RECEIVER_ROUTE

logger = logging.getLogger("zapi_queue.webhook")

MAX_BODY = 1024 * 1024
#: Request line and headers at most (uvicorn's default for h11, made explicit).
MAX_HEADER = 16 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class BodyTooLarge(Exception):  # noqa: N818 - an answer, not a failure of ours
    """The request's body is over MAX_BODY."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes before more is read (Content-Length or not)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(outcome: Outcome) -> JSONResponse:
    return JSONResponse(outcome.body(), status_code=outcome.status)


def create_app(settings: Settings, client: redis.Redis | None = None) -> Starlette:
    """The receiver's ASGI app; ConfigurationError when ``ZAPI_WEBHOOK_SECRET`` is not set."""
    if settings.zapi_webhook_secret is None or not settings.zapi_webhook_secret.get_secret_value():
        raise ConfigurationError(
            "ZAPI_WEBHOOK_SECRET is required by the webhook receiver: a long random string "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), the last "
            "segment of the URL given to Z-API: https://<host>/webhooks/zapi/<secret>"
        )
    if not fleet_instance_ids(settings):
        raise ConfigurationError(
            "the webhook receiver keeps callbacks for the fleet's instances only: set "
            "ZAPI_INSTANCE_ID or ZAPI_INSTANCES (their instance ids)"
        )
    secret = settings.zapi_webhook_secret.get_secret_value().encode()
    body_timeout = settings.zapi_webhook_body_timeout
    state = client or connect(settings.state_redis_url, retries=2)
    inbox = Inbox(state, settings)
    secrets = settings.secret_values()

    def take(payload: dict[str, Any], kind: str) -> Outcome:
        """One callback applied, in a span of its own when tracing (named by the route
        template: the real path holds the secret)."""
        with tracing.serving(RECEIVER_ROUTE, "POST") as span:
            outcome = inbox.take(payload)
            if span is not tracing.OFF:  # the type is the sender's text: made safe, if shown
                span.set(
                    {
                        "http.response.status_code": outcome.status,
                        "zapi.callback_type": tracing.safe_text(kind),
                        "zapi.outcome": outcome.outcome,
                    }
                )
            return outcome

    async def receive(request: Request) -> JSONResponse:
        started = time.perf_counter()
        given = str(request.path_params["secret"]).encode()
        if not hmac.compare_digest(given, secret):
            return JSONResponse({"error": "not found"}, status_code=404)
        kind = "?"
        try:
            body = await asyncio.wait_for(_read_body(request, MAX_BODY), body_timeout)
            payload = json.loads(body)
            if not isinstance(payload, dict):
                outcome = Outcome(400, "rejected", "the body must be a JSON object")
            else:
                kind = callback_type(payload)
                outcome = await run_in_threadpool(take, payload, kind)
        except BodyTooLarge:
            outcome = Outcome(413, "rejected", f"the body is over {MAX_BODY} bytes")
        except TimeoutError:
            outcome = Outcome(408, "rejected", f"the body took over {body_timeout:g} s")
        except ClientDisconnect:
            outcome = Outcome(400, "rejected", "the client left before its body arrived")
        except RecursionError:
            outcome = Outcome(
                400, "rejected", "the body is not JSON we can read: nested too deeply"
            )
        except ValueError:  # UnicodeDecodeError and JSONDecodeError included
            outcome = Outcome(400, "rejected", "the body is not JSON")
        except redis.RedisError as exc:
            error = redact(f"{type(exc).__name__}: {exc}", secrets)
            logger.warning("webhook %s: Redis unavailable (%s); answered 503", kind, error)
            outcome = Outcome(503, "unavailable", "state unavailable, try again")
        logger.info(
            "webhook %s %s %d in %.1fms",
            kind,
            outcome.outcome,
            outcome.status,
            (time.perf_counter() - started) * 1000,
        )
        return _answer(outcome)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "not found"}, status_code=404)

    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "method not allowed"}, status_code=405)

    handlers: dict[Any, Any] = {404: not_found, 405: method_not_allowed}
    return Starlette(
        routes=[
            Route(RECEIVER_ROUTE, receive, methods=["POST"]),
            healthz_route(state),
        ],
        exception_handlers=handlers,
    )


def serve(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the receiver with uvicorn until stopped (SIGINT or SIGTERM), tracing when asked
    (worker/tracing_setup.py)."""
    app = create_app(settings)
    start_tracing("zapi-queue-webhook")
    try:
        run(  # no access log (worker/http_server.py): it would print the secret path
            app,
            settings,
            host=host,
            port=port,
            http="h11",  # the limits below are h11's (httptools, if installed, has others)
            limit_concurrency=settings.zapi_webhook_concurrency,
            timeout_keep_alive=settings.zapi_webhook_keep_alive,
            h11_max_incomplete_event_size=MAX_HEADER,
        )
    finally:
        stop_tracing()
