"""Flower must not serve an unauthenticated dashboard beyond this machine.

Flower listens on every interface by default and shows every job. ``celery -A worker flower``
therefore refuses to start when it would listen on a non-loopback address without
authentication (``FLOWER_BASIC_AUTH=user:password``, or ``--basic-auth``/``--auth``), unless
``ZAPI_FLOWER_ALLOW_UNAUTHENTICATED=1`` says it is on purpose (e.g. behind an authenticating
proxy). The check runs as a tornado parse callback, so it sees Flower's final options, whether
they came from the command line, ``FLOWER_*`` variables or ``flowerconfig.py``.
"""

from __future__ import annotations

import ipaddress
import os
import sys

ALLOW_VARIABLE = "ZAPI_FLOWER_ALLOW_UNAUTHENTICATED"


def is_loopback(address: str) -> bool:
    if address in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # '' (all interfaces), a hostname, or anything else we cannot vouch for


def refusal(address: str, basic_auth: list[str] | None, auth: str | None) -> str | None:
    """Why Flower must not start with these options, or None if it may."""
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


def install() -> None:
    """Check Flower's options once they are parsed (no effect on anything but Flower)."""
    try:
        from tornado.options import options
    except ImportError:  # pragma: no cover - flower (and tornado) are dependencies
        return
    options.add_parse_callback(_check_flower_options)
