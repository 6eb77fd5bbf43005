"""Who may use the console: every page asks for a login, except ``/healthz``.

Two ways, chosen at start: HTTP basic auth against ``ZAPI_CONSOLE_AUTH=user:password``, or a
header an authenticating proxy in front sets (``--trust-proxy-header X-Forwarded-User``; the
proxy must strip that header from what clients send, and the console must be reachable only
through it). Anything else is answered 401 with ``WWW-Authenticate: Basic``, so a browser asks.

The login is checked as Flower's guard checks ``FLOWER_BASIC_AUTH`` (worker/flower_guard.py):
missing, empty, ``user:``, ``:pw`` or a placeholder password (config/passwords.py) refuses the
start, in one line that never quotes the password. Both parts are compared with
:func:`hmac.compare_digest`, so the answer's timing tells nothing about them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from config import Settings
from config.passwords import is_placeholder

#: Paths served without a login: compose's healthcheck.
OPEN_PATHS = frozenset({"/healthz"})
#: The realm browsers show in their login prompt.
REALM = "zapi-queue console"
#: A header name as RFC 9110 allows (a token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: The longest user name shown (a proxy's header is input too).
MAX_USER = 200


class LoginRefusedError(ValueError):
    """The console must not start with this login; the message names the variable, not the
    password."""


@dataclass(frozen=True, slots=True)
class Login:
    """How requests are authenticated: a basic-auth pair, or a proxy's header naming the user."""

    user: bytes = b""
    password: bytes = b""
    proxy_header: str | None = None

    def user_of(self, connection: HTTPConnection) -> str | None:
        """The user a request is from, or None when it is anonymous (or its login is wrong)."""
        if self.proxy_header is not None:
            user = connection.headers.get(self.proxy_header, "").strip()
            return _shown_user(user) if user else None
        return self._basic_user(connection.headers.get("authorization", ""))

    def _basic_user(self, header: str) -> str | None:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, colon, password = decoded.partition(b":")
        # Both compared, whatever the first says: no early answer for a right user name.
        same_user = hmac.compare_digest(user, self.user)
        same_password = hmac.compare_digest(password, self.password)
        if not (colon and same_user and same_password):
            return None
        return _shown_user(user.decode("utf-8", "replace"))


def _shown_user(user: str) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in user)
    return shown[:MAX_USER]


def login_for(settings: Settings, *, trust_proxy_header: str | None = None) -> Login:
    """The console's login from ``ZAPI_CONSOLE_AUTH``, or the proxy's header when one is
    trusted; :class:`LoginRefusedError` says why it cannot start."""
    if trust_proxy_header is not None:
        if not _HEADER_NAME.fullmatch(trust_proxy_header):
            raise LoginRefusedError(
                "--trust-proxy-header must be a header name, e.g. X-Forwarded-User"
            )
        return Login(proxy_header=trust_proxy_header.lower())
    secret = settings.zapi_console_auth
    value = secret.get_secret_value() if secret is not None else ""
    if not value.strip():
        raise LoginRefusedError(
            "refusing to start the console without a login: set ZAPI_CONSOLE_AUTH=user:password "
            "(or --trust-proxy-header NAME behind an authenticating proxy)"
        )
    user, colon, password = value.partition(":")
    if not colon or not user.strip() or not password.strip():
        raise LoginRefusedError("ZAPI_CONSOLE_AUTH must be user:password with both parts non-empty")
    if is_placeholder(password):
        raise LoginRefusedError("ZAPI_CONSOLE_AUTH has a placeholder password: set one of your own")
    return Login(user=user.encode(), password=password.encode())


class RequireLogin:
    """ASGI middleware: a request without a valid login gets 401; one with it carries its user
    in ``scope["state"]["user"]`` (``request.state.user``)."""

    def __init__(self, app: ASGIApp, login: Login) -> None:
        self.app = app
        self.login = login

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        user = self.login.user_of(HTTPConnection(scope))
        if user is None:
            response = PlainTextResponse(
                "login required",
                status_code=401,
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)
