"""Under gevent, redis-py's readiness check on every connection it lends asks the OS directly.

Before lending a pooled connection, redis-py checks that nothing is waiting to be read on it
(``ConnectionPool.get_connection`` -> ``can_read()``), with ``select.poll`` and a zero timeout;
its hiredis parser checks again for a closed peer the same way. Once gevent has patched
``select``, each of those polls goes through gevent's hub: io watchers, a zero timer, a switch
to the hub and back. That is five or six hub round trips per job, about 4% of a worker's CPU
(``python -m bench.profile``, issue #34), for a check that never waits.

:func:`install` gives redis-py's hiredis parser a ``select`` whose ``poll`` objects answer a
zero-timeout ``poll`` with the operating system's own (it cannot block, so no greenlet is held
up), and any other timeout with gevent's, as before. Nothing changes without gevent's patch,
or when redis-py no longer has the module or the function it is meant for.
"""

from __future__ import annotations

import importlib
import logging
import select
import sys
import types
from typing import Any

logger = logging.getLogger(__name__)

#: redis-py's module whose ``select`` the readiness checks use, and the check it must hold.
PARSER_MODULE = "redis._parsers.hiredis"
PARSER_CHECK = "_socket_can_read"


class ZeroWaitPoll:
    """A ``select.poll`` that asks the OS itself when asked not to wait."""

    def __init__(self, os_poll: Any, green_poll: Any) -> None:
        self._os = os_poll()
        self._green_poll = green_poll
        self._registered: list[tuple[Any, int]] = []

    def register(self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI) -> None:
        self._os.register(fd, eventmask)
        self._registered.append((fd, eventmask))

    def unregister(self, fd: Any) -> None:
        self._os.unregister(fd)
        self._registered = [(known, mask) for known, mask in self._registered if known != fd]

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        if timeout == 0:
            return self._os.poll(0)  # type: ignore[no-any-return]
        green = self._green_poll()  # a wait: gevent's, so other greenlets run meanwhile
        for fd, mask in self._registered:
            green.register(fd, mask)
        return green.poll(timeout)  # type: ignore[no-any-return]


def zero_wait_select(os_poll: Any, green_poll: Any) -> types.ModuleType:
    """A copy of the (patched) ``select`` module whose ``poll`` is a :class:`ZeroWaitPoll`."""
    copy = types.ModuleType("select")
    copy.__dict__.update(vars(select))
    copy.poll = lambda: ZeroWaitPoll(os_poll, green_poll)  # type: ignore[attr-defined]
    return copy


def install() -> bool:
    """Give redis-py's readiness checks the OS's zero-timeout poll once gevent has patched
    ``select``; True when installed."""
    monkey = sys.modules.get("gevent.monkey")  # loaded by whatever patched; else nothing to do
    if monkey is None or not monkey.is_module_patched("select"):
        return False
    os_poll = monkey.get_original("select", "poll")
    try:
        parser = importlib.import_module(PARSER_MODULE)
    except ImportError:
        return False
    if getattr(parser, "select", None) is not select or not hasattr(parser, PARSER_CHECK):
        logger.debug("redis-py's readiness check moved: it keeps gevent's poll")
        return False
    parser.select = zero_wait_select(os_poll, select.poll)  # type: ignore[attr-defined]
    return True
