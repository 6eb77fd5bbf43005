"""The webhook receiver's URL as Z-API is given it: checked before it is set, shown masked.

The receiver (worker/webhook.py) serves ``POST /webhooks/zapi/{secret}``. Behind a proxy the
public URL may have a prefix before that route, so only its end is checked. Z-API does not
sign webhooks: the secret segment is the credential, and no output shows it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from tasks.contract.redaction import MASK, redact

#: The receiver's route (Starlette's syntax), and what its secret segment looks like in a URL.
RECEIVER_ROUTE = "/webhooks/zapi/{secret}"
_ROUTE_PREFIX = RECEIVER_ROUTE.removesuffix("{secret}")
_ROUTE_END = re.compile(re.escape(_ROUTE_PREFIX) + r"(?P<secret>[^/]+)\Z")


def url_problem(url: str, secret: str | None = None) -> str | None:
    """Why ``url`` is not one to give Z-API for this receiver, or None. ``secret``: the
    receiver's ZAPI_WEBHOOK_SECRET when known (the URL's secret segment must then be it)."""
    if not url or any(not char.isprintable() or char.isspace() for char in url):
        return "must be a URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return "is not a URL that can be read"
    if parts.scheme.lower() != "https":
        return (
            "must be HTTPS: Z-API only calls HTTPS webhook URLs and refuses others (put a "
            "TLS-terminating proxy, or a tunnel in development, in front of `zapi-queue webhook`)"
        )
    if not hostname:
        return "has no host"
    given = secret_of(url)
    if given is None:
        return (
            f"must end in the receiver's route, {RECEIVER_ROUTE.replace('{secret}', '<secret>')} "
            "(a proxy may put a prefix before it)"
        )
    if secret and not same_secret(given, secret):
        return (
            "its last segment is not ZAPI_WEBHOOK_SECRET: the receiver would answer 404 to "
            "every callback (set ZAPI_WEBHOOK_SECRET to the receiver's, or leave it unset here "
            "to skip this check)"
        )
    return None


def masked_url(url: str, secrets: Iterable[str] = ()) -> str:
    """``url`` fit to show: scheme and host, the receiver's route with its secret segment
    masked (whatever its value); any other path, a query, a fragment or a password masked whole
    (another system's URL may carry its own token there); every value of ``secrets`` masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{MASK}@{host}" if "@" in parts.netloc else host
    route = _ROUTE_END.search(parts.path)
    if route is not None:
        path = parts.path[: route.start("secret")] + MASK
    elif parts.path in ("", "/"):
        path = parts.path
    else:
        path = ("/" if parts.path.startswith("/") else "") + MASK
    shown = f"{parts.scheme}://{netloc}" if parts.scheme or netloc else ""
    shown += path + ("?" + MASK if parts.query else "") + ("#" + MASK if parts.fragment else "")
    return redact(shown, secrets)


def secret_of(url: str) -> str | None:
    """The secret segment of a receiver URL (decoded), None when ``url`` has none."""
    try:
        route = _ROUTE_END.search(urlsplit(url).path)
    except ValueError:
        return None
    return unquote(route["secret"]) if route else None


def same_secret(given: str, secret: str) -> bool:
    """Whether a URL's secret segment is the receiver's (compared in constant time, as the
    receiver does)."""
    return hmac.compare_digest(given.encode(), secret.encode())
