"""The bottom layer of the reliable channel: kombu's Redis channel, one pooled client, our scripts.

The channel (worker/transport.py explains the design) is built in layers, one concern and one
module each, every layer a subclass of the one below and using only what is below it:

* :class:`ChannelBase` (here): whether this channel can fetch reliably, its token and owned set,
  one client per connection pool, and the Lua scripts called by name;
* :class:`~worker.fetch_errors.ErrorEpisodes`: Redis errors back the fetch loop off, logged
  once per episode;
* :class:`~worker.fetch_acks.Acks`: ownership-checked acks and re-queues, kept and retried when
  Redis refuses them (and the QoS that calls them);
* :class:`~worker.fetch_leases.Leases`: leases, sweeps and takeovers (and the LeaseKeeper);
* :class:`~worker.fetch_channel.Channel`: the fetch and the claim.

Reliable fetch needs Redis 6.2 (``LMOVE``), a single consumed queue per channel and no
``global_keyprefix``; otherwise the channel says so in the log and fetches as kombu does. None
of these modules imports anything of the app that pulls Celery tasks or settings in (only the
leaf ``tasks.backoff`` and ``tasks.state`` key and script modules): kombu loads the transport
by name.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

from kombu.utils.objects import cached_property

from tasks.state.keys import OWNED_PREFIX
from tasks.state.scripts import BoundScript
from worker.fetch_scripts import FETCH_SCRIPTS, library_keys

#: Untyped on purpose: celery-types' kombu stubs cover the public API, and these modules override
#: private methods of kombu's Redis channel (pinned in pyproject.toml; tests/test_transport.py).
kombu_redis: Any = importlib.import_module("kombu.transport.redis")
KombuQoS: Any = kombu_redis.QoS
KombuChannel: Any = kombu_redis.Channel
KombuTransport: Any = kombu_redis.Transport
KombuSentinelChannel: Any = kombu_redis.SentinelChannel
KombuSentinelTransport: Any = kombu_redis.SentinelTransport

#: One logger for the whole transport, as before its split: "worker.transport".
logger = logging.getLogger("worker.transport")

#: Redis 6.2 brought LMOVE and BLMOVE.
MIN_REDIS_VERSION = (6, 2)


def redis_version(info: dict[str, Any]) -> tuple[int, ...]:
    """``(6, 2, 14)`` from ``INFO server``; servers that hide it count as new enough."""
    raw = str(info.get("redis_version", "99"))
    return tuple(int(part) for part in raw.split(".") if part.isdigit())


class ChannelBase(KombuChannel):
    """Kombu's Redis channel, with what every layer above uses: ``reliable_fetch``, the
    channel's ``owned_key``, :meth:`conn_or_acquire` and :meth:`_run`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._shared_client: Any = None  # see conn_or_acquire
        self._token = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
        #: Set of the delivery tags this channel holds unacked: taken over if its lease expires.
        self.owned_key = f"{OWNED_PREFIX}{self._token}"
        super().__init__(*args, **kwargs)

    @cached_property
    def reliable_fetch(self) -> bool:
        """Whether this channel can fetch reliably; says why not, once, when it cannot."""
        reason = None
        if not self.ack_emulation:
            reason = "ack_emulation is off"
        elif self.global_keyprefix:
            reason = "global_keyprefix is set"
        elif self._server_version() < MIN_REDIS_VERSION:
            reason = "the Redis server is older than 6.2, or hides its version"
        if reason:
            logger.warning("reliable fetch is off (%s): fetching with BRPOP", reason)
        return reason is None

    def _server_version(self) -> tuple[int, ...]:
        """The server's version; ``(0,)`` (so: no reliable fetch) where INFO is disabled."""
        try:
            with self.conn_or_acquire() as client:
                return redis_version(client.info("server"))
        except self.ResponseError:
            return (0,)

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """Kombu's, with one client per connection pool instead of one per call: kombu builds a
        ``redis.Redis`` for every ack, publish and script run, which costs as much CPU as the
        round trip itself. A client over a pool is thread-safe (each command takes a pooled
        connection); a new pool (after a fork, or a close) gets a new client."""
        if client:
            yield client
            return
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared_client = self._create_client()
        yield shared

    @cached_property
    def _scripts(self) -> dict[str, BoundScript]:
        return {name: script.register(self.client) for name, script in FETCH_SCRIPTS.items()}

    @cached_property
    def _library_keys(self) -> dict[str, str]:
        """The keys every script but TAKE starts with, by name (this channel's unacked hash)."""
        return library_keys(unacked=self.unacked_key, index=self.unacked_index_key)

    def _run(self, script: str, client: Any = None, **named: Any) -> Any:
        """Run one of our Lua scripts (worker/fetch_scripts.lua), its keys and arguments by name,
        on a pooled connection (never the blocked fetch one)."""
        with self.conn_or_acquire(client) as client:
            return self._scripts[script](client=client, **self._library_keys, **named)
