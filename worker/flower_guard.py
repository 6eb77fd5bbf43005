"""Flower must not serve an unauthenticated dashboard beyond this machine.

Flower listens on every interface by default and shows every job. ``celery -A worker flower``
therefore refuses to start when it would listen on a non-loopback address without
authentication (``FLOWER_BASIC_AUTH=user:password``, or ``--basic-auth``/``--auth``), unless
``ZAPI_FLOWER_ALLOW_UNAUTHENTICATED=1`` says it is on purpose (e.g. behind an authenticating
proxy). The check runs as a tornado parse callback, so it sees Flower's final options, whether
they came from the command line, ``FLOWER_*`` variables or ``flowerconfig.py``.

An empty or blank ``FLOWER_BASIC_AUTH=`` (Flower reads it as one empty credential, which no
login matches) counts as missing; an entry without a user or a password (``user:``, ``:pw``)
is refused wherever Flower listens: it is a typo, and Flower would start with nobody able to
log in; so is a placeholder password such as ``admin:change-me`` (config/passwords.py), which
old copies of .env.example shipped. Flower serves ``/metrics`` without authentication; here it
asks for the same login as the dashboard (Prometheus scrapes with ``basic_auth``).
"""

from __future__ import annotations

import ipaddress
import os
import sys

from config.passwords import is_placeholder

ALLOW_VARIABLE = "ZAPI_FLOWER_ALLOW_UNAUTHENTICATED"


def is_loopback(address: str) -> bool:
    if address in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # '' (all interfaces), a hostname, or anything else we cannot vouch for


def credentials(basic_auth: list[str] | None) -> list[str]:
    """The ``user:password`` entries given, blank ones dropped; ValueError names a malformed
    one by its position only (the entry may hold a password)."""
    given = [entry for entry in basic_auth or [] if entry.strip()]
    for position, entry in enumerate(given, start=1):
        user, colon, password = entry.partition(":")
        if not colon or not user.strip() or not password.strip():
            raise ValueError(
                f"FLOWER_BASIC_AUTH (--basic-auth) entry {position} of {len(given)} must be "
                "user:password with both parts non-empty"
            )
        if is_placeholder(password):
            raise ValueError(
                f"FLOWER_BASIC_AUTH (--basic-auth) entry {position} of {len(given)} has a "
                "placeholder password (such as change-me): set one of your own"
            )
    return given


def refusal(address: str, basic_auth: list[str] | None, auth: str | None) -> str | None:
    """Why Flower must not start with these options, or None if it may."""
    try:
        basic_auth = credentials(basic_auth)
    except ValueError as malformed:
        return f"refusing to start Flower: {malformed}"
    if basic_auth or auth or is_loopback(address):
        return None
    if os.environ.get(ALLOW_VARIABLE, "").lower() in ("1", "true", "yes"):
        return None
    where = address or "all interfaces"
    return (
        f"refusing to serve Flower on {where} without authentication: set "
        f"FLOWER_BASIC_AUTH=user:password, listen on 127.0.0.1 (--address=127.0.0.1), or set "
        f"{ALLOW_VARIABLE}=1 if a proxy in front of it authenticates"
    )


def _check_flower_options() -> None:
    from tornado.options import options

    if "basic_auth" not in options:  # a tornado program other than Flower
        return
    reason = refusal(options.address, options.basic_auth, options.auth)
    if reason:
        print(f"zapi-queue: {reason}", file=sys.stderr)
        raise SystemExit(2)
    # Blank entries dropped: with none left Flower is open (as allowed), not locked for all.
    options.basic_auth = credentials(options.basic_auth)
    _authenticate_metrics()


def _authenticate_metrics() -> None:
    """Flower's ``/metrics`` asks for the dashboard's login (it has none of its own)."""
    from flower.views.monitor import Metrics
    from tornado.web import authenticated

    if not getattr(Metrics.get, "_zapi_authenticated", False):
        guarded = authenticated(Metrics.get)
        guarded._zapi_authenticated = True  # type: ignore[attr-defined]
        Metrics.get = guarded


def install() -> None:
    """Check Flower's options once they are parsed (no effect on anything but Flower)."""
    try:
        from tornado.options import options
    except ImportError:  # pragma: no cover - flower (and tornado) are dependencies
        return
    options.add_parse_callback(_check_flower_options)
