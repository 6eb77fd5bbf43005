"""The operator console: a Starlette app of server-rendered pages (Jinja2), login on every one.

``build_app`` wires what every page shares, kept on ``app.state``: the settings, a client for
the state Redis, the dead-letter store, the CSRF tokens, the templates. Each group of pages is
a module of this package exposing ``routes`` (a list of Starlette routes), listed in
``PAGE_MODULES``: adding a page is adding a module and a line.

Pages read without JavaScript; a page that follows a background action refreshes itself with
``<meta http-equiv="refresh">``. Every response says not to be cached (the pages show customers'
orders, masked or not), not to be framed, and to load nothing from elsewhere.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings
from tasks import dead_letters
from tasks.contract.redaction import mask_digit_runs, mask_phone
from tasks.state.audit import AuditLog
from tasks.state.deadletter import DeadLetterStore
from tasks.state.store import connect
from worker.console import DEFAULT_HOST, DEFAULT_PORT
from worker.console.actions import Actions
from worker.console.auth import RequireLogin, login_for
from worker.console.csrf import FIELD, CsrfTokens
from worker.healthz import healthz_route
from worker.http_server import run
from worker.replays import sender

HERE = Path(__file__).resolve().parent
#: The page modules of this package, each exposing ``routes``.
PAGE_MODULES: tuple[str, ...] = (
    # one line per group of pages
    "worker.console.orders",
    "worker.console.dead_pages",
    "worker.console.instances",
)
#: The navigation bar: (label, path); a page marks its own with ``section``.
NAV = (("Orders", "/orders"), ("Dead letters", "/dead"), ("Instances", "/instances"))

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def when(epoch: Any) -> str:
    """A time kept in Redis, in UTC, readable; anything but a number as ``?``."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(epoch)))
    except (TypeError, ValueError, OverflowError):
        return "?"


def templates() -> Jinja2Templates:
    """The pages' templates (autoescaped), with the maskers as filters: ``phone`` for a phone,
    ``masked`` for free text that may quote one (an error message), ``when`` for a time."""
    pages = Jinja2Templates(directory=HERE / "templates")
    pages.env.filters.update(phone=mask_phone, masked=_masked_text, when=when)
    return pages


def _masked_text(value: Any) -> str:
    return mask_digit_runs(str(value))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page, with what ``base.html`` needs: the user, the CSRF token for its forms, the nav."""
    user = getattr(request.state, "user", "")
    pages: Jinja2Templates = request.app.state.templates
    context.update(
        user=user,
        csrf_field=FIELD,
        csrf_token=request.app.state.csrf.token(user) if user else "",
        nav=NAV,
    )
    context.setdefault("section", "")
    return pages.TemplateResponse(request, template, context, status_code=status_code)


async def home(request: Request) -> Response:
    return render(request, "home.html")


async def http_error(request: Request, exc: Exception) -> Response:
    """An error as a page (404, 403 of a form without its token, 413, ...)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return render(request, "error.html", status_code=status, status=status, detail=detail)


def page_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for name in PAGE_MODULES:
        routes += importlib.import_module(name).routes
    return routes


def build_app(
    settings: Settings,
    *,
    trust_proxy_header: str | None = None,
    client: redis.Redis | None = None,
    send: dead_letters.Send | None = None,
) -> Starlette:
    """The console for these settings; ``LoginRefusedError`` (worker/console/auth.py) when its
    login is missing or unusable. ``client``: the state Redis, ``send``: how a replay enqueues
    (default: the worker's Celery app, worker/replays.py); tests hand theirs in."""
    login = login_for(settings, trust_proxy_header=trust_proxy_header)
    state = client if client is not None else connect(settings.state_redis_url)
    app = Starlette(
        routes=[
            healthz_route(state),
            Route("/", home, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            *page_routes(),
        ],
        middleware=[Middleware(SecurityHeaders), Middleware(RequireLogin, login=login)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.settings = settings
    app.state.redis = state
    app.state.dead_letters = store = DeadLetterStore.from_settings(state, settings)
    app.state.audit = audit = AuditLog(state)
    send = sender() if send is None else send
    app.state.actions = Actions(store, send, audit, secrets=settings.secret_values())
    app.state.csrf = CsrfTokens()
    app.state.templates = templates()
    return app


def serve(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    trust_proxy_header: str | None = None,
) -> None:
    """Run the console with uvicorn until stopped (SIGINT or SIGTERM). No access log: a URL
    may carry what an operator searched for (an order id, a phone)."""
    app = build_app(settings, trust_proxy_header=trust_proxy_header)
    run(app, settings, host=host, port=port)
