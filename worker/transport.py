"""Kombu's Redis transport with reliable fetch: a message is never only in a worker's memory.

Kombu's Redis transport takes a message with ``BRPOP`` and only then records it as unacknowledged.
Between the two the message exists nowhere but in the worker's socket buffer: a worker killed
there (SIGKILL, OOM, host loss), or a connection dropped with the reply in flight, loses it for
good (celery/celery#7950, celery/kombu#305). This transport closes that window with Redis'
reliable-queue pattern:

1. **Fetch** moves the message atomically into this channel's *processing list*
   (``BLMOVE queue processing``): it is always in Redis, in the queue or in that list.
2. **Claim** then moves it (or them: see *taking ahead*), in one Lua script, from the
   processing list into kombu's ``unacked`` hash, this channel's **owned set**, and the
   **holders** hash (tag -> owned set).
3. Each processing list holds a **lease** in Redis, renewed while the channel lives, also by a
   keeper thread (so a warm shutdown never looks like a death); a renewal keeps the channel's
   jobs clear of kombu's visibility timeout.
4. When a lease expires, any worker's sweep (and any idle fetch) moves the processing list's
   messages back to the head of their queue and restores the owner's unacked jobs at once: a
   crashed worker's jobs resume after ``fetch_lease``, not after the visibility timeout.

Acks and restores are checked against the holders (a worker that stalled past its lease cannot
undo a takeover), Redis errors back the fetch loop off instead of stopping the worker, and
closing does no I/O of its own. The channel is built in layers, one concern per module, each
module's docstring the design of its part (worker/fetch_base.py lists them): the fetch and the
claim (worker/fetch_channel.py), leases, sweeps and takeovers (worker/fetch_leases.py), acks and
the QoS (worker/fetch_acks.py), error episodes (worker/fetch_errors.py), the scripts and the
pooled client (worker/fetch_base.py; the Lua: worker/fetch_scripts.lua), and the poller that an
ack wakes when no event loop runs (worker/fetch_wake.py).

This module holds the transports kombu loads by name (``worker.transport:Transport``) and
:func:`register`, and names the parts' public pieces. Like them, it imports nothing of the app
that pulls Celery tasks or settings in.
"""

from __future__ import annotations

import importlib
from typing import Any

from worker.fetch_acks import QoS
from worker.fetch_base import (
    MIN_REDIS_VERSION,
    KombuSentinelChannel,
    KombuSentinelTransport,
    KombuTransport,
    redis_version,
)
from worker.fetch_channel import NO_ARRIVAL, Arrival, Channel
from worker.fetch_errors import FETCH_BACKOFF
from worker.fetch_leases import LeaseKeeper
from worker.fetch_wake import WakingPoller

__all__ = [
    "FETCH_BACKOFF",
    "MIN_REDIS_VERSION",
    "NO_ARRIVAL",
    "OURS",
    "Arrival",
    "Channel",
    "LeaseKeeper",
    "QoS",
    "SentinelChannel",
    "SentinelTransport",
    "Transport",
    "WakingPoller",
    "redis_version",
    "register",
]


class WakingCycle:
    """Both transports' poller: kombu's, woken by an ack when no event loop turns (gevent).
    The one kombu's ``__init__`` made is closed, not left to the garbage collector."""

    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle.poller.close()
        self.cycle = WakingPoller()


class Transport(WakingCycle, KombuTransport):
    """``redis://`` and ``rediss://`` with reliable fetch (:func:`register` selects it; a test
    may name it as a kombu ``transport``)."""

    Channel = Channel


class SentinelChannel(Channel, KombuSentinelChannel):
    """The reliable channel on a Sentinel-managed master: kombu's Sentinel channel finds the
    master (``master_name``, ``sentinel_kwargs``) and reconnects to the new one after a
    failover; fetching, claims, leases and sweeps are :class:`Channel`'s."""

    from_transport_options = (
        *KombuSentinelChannel.from_transport_options,
        "fetch_lease",
        "arrival_index",
    )


class SentinelTransport(WakingCycle, KombuSentinelTransport):
    """``sentinel://`` with reliable fetch (:func:`register` selects it)."""

    Channel = SentinelChannel


#: kombu's names for the Redis transports, and ours for each.
OURS = {
    "redis": "worker.transport:Transport",
    "rediss": "worker.transport:Transport",
    "sentinel": "worker.transport:SentinelTransport",
}


def register() -> None:
    """Make kombu resolve its Redis schemes to these transports in this process (the worker's,
    at start: worker/signals.py).

    By scheme, not by a class path in ``broker_transport``: with several ``;``-separated URLs
    kombu's failover (``Connection.switch``) re-reads the next URL's scheme, and would load its
    stock transport, without reliable fetch, after the first connection error; and a class path
    would become the scheme of the broker URL kombu renders (Flower could not read it)."""
    kombu_transport = importlib.import_module("kombu.transport")
    kombu_transport.TRANSPORT_ALIASES.update(OURS)
    for scheme in OURS:  # kombu caches what a name resolved to
        kombu_transport._transport_cache.pop(scheme, None)
