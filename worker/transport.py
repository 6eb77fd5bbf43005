"""Kombu's Redis transport with reliable fetch: a message is never only in a worker's memory.

Kombu's Redis transport takes a message with ``BRPOP`` and only then records it as unacknowledged.
Between the two the message exists nowhere but in the worker's socket buffer: a worker killed
there (SIGKILL, OOM, host loss), or a connection dropped with the reply in flight, loses it for
good (celery/celery#7950, celery/kombu#305). This transport closes that window with Redis'
reliable-queue pattern:

1. **Fetch** moves the message atomically into this channel's *processing list*
   (``BLMOVE queue processing``): it is always in Redis, in the queue or in that list.
2. **Claim** then moves it, in one Lua script, from the processing list into kombu's
   ``unacked`` hash, where kombu's visibility timeout takes over, as it always did.
3. Each processing list holds a **lease** in Redis, renewed by its worker at every claim, at
   every restore sweep (``unacked_restore_interval``), and before any fetch when the last
   renewal is older than a third of the lease. Any worker's sweep (and any idle fetch) moves
   the messages of an expired lease back to the head of their queue. A worker that fetches
   again after losing its connection first returns what the lost reply left behind, and a
   stopping worker returns its own. A claim that finds its message already returned drops its
   copy: never two owners.
4. The claim also records the job in its channel's **owned set**, and an ack removes it. When
   a lease expires, the owner's unacked jobs are restored at once (kombu's ``restore_by_tag``),
   so a crashed worker's jobs resume after ``fetch_lease`` instead of the visibility timeout,
   which stays as the backstop. The timeout can then stay long enough for retry countdowns.

Lower-priority lists (kombu's ``queue\\x06\\x163``...) feed the main list whenever it is empty
(at each claim, and before each blocking fetch), so one blocking ``BLMOVE`` serves every priority;
a lower-priority message that arrives while workers block on an empty main list waits up to
``brpop_timeout`` (1 s). The per-message cost is unchanged: the claim replaces kombu's own
``unacked`` write. An item that is not a kombu message is set aside in ``REJECTED_KEY``.

A Redis outage longer than the lease makes every lease look expired when Redis is back: the
first sweep may then take over live workers' jobs before they renew. Those jobs run twice, and
the idempotency claims (tasks/idempotency.py) keep the send single.

Reliable fetch needs Redis 6.2 (``LMOVE``), a single consumed queue per channel and no
``global_keyprefix``; otherwise the channel says so in the log and fetches as kombu does.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
import uuid
from time import monotonic, time
from typing import Any

from kombu.transport import virtual
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property
from redis.commands.core import Script

from worker.fetch_scripts import (
    LEASES_KEY,
    OWNED_PREFIX,
    OWNERS_KEY,
    REJECTED_KEY,
    SCRIPTS,
    SOURCES_KEY,
)

#: Untyped on purpose: celery-types' kombu stubs cover the public API, and this module overrides
#: private methods of kombu's Redis channel (pinned in pyproject.toml; tests/test_transport.py).
kombu_redis: Any = importlib.import_module("kombu.transport.redis")
KombuQoS: Any = kombu_redis.QoS
KombuChannel: Any = kombu_redis.Channel
KombuTransport: Any = kombu_redis.Transport

logger = logging.getLogger(__name__)

#: Redis 6.2 brought LMOVE and BLMOVE.
MIN_REDIS_VERSION = (6, 2)


def redis_version(info: dict[str, Any]) -> tuple[int, ...]:
    """``(6, 2, 14)`` from ``INFO server``; servers that hide it count as new enough."""
    raw = str(info.get("redis_version", "99"))
    return tuple(int(part) for part in raw.split(".") if part.isdigit())


class QoS(KombuQoS):
    """Kombu's ack emulation, minus the ``unacked`` write a claim has already made."""

    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.take_claimed(delivery_tag):
            virtual.QoS.append(self, message, delivery_tag)  # in memory only
        else:
            super().append(message, delivery_tag)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Kombu's periodic sweep: also renew our leases and take over dead workers' jobs."""
        self.channel.sweep_processing_lists()
        super().restore_visible(*args, **kwargs)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        """Acked, rejected or restored: no longer one of this channel's jobs."""
        pipe = super()._remove_from_indices(delivery_tag, pipe)
        return pipe.srem(self.channel.owned_key, delivery_tag)


class Channel(KombuChannel):
    """A Redis channel that fetches with ``BLMOVE`` into a leased processing list."""

    QoS = QoS

    #: Seconds a channel's processing lists and jobs stay its own without a renewal; then any
    #: worker's sweep takes them over. Renewed by the LeaseKeeper a third of a lease apart.
    fetch_lease = 60

    from_transport_options = (*KombuChannel.from_transport_options, "fetch_lease")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._processing: dict[str, str] = {}  # queue list -> this channel's processing list
        self._fetching: tuple[str, str] | None = None  # (queue, processing) of the BLMOVE sent
        self._claimed_tag: str | None = None
        self._no_ack_queues: set[str] = set()
        self._prepared = False
        self._renewed_at = float("-inf")  # monotonic time of our last lease renewal
        self._warned_stock_fetch = False
        self._token = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
        #: Set of the delivery tags this channel holds unacked: taken over if its lease expires.
        self.owned_key = f"{OWNED_PREFIX}{self._token}"
        self._lease_keeper = LeaseKeeper(self)
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

    # -- fetch ---------------------------------------------------------------------------------

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        no_ack = kwargs.get("no_ack", args[0] if args else False)
        (self._no_ack_queues.add if no_ack else self._no_ack_queues.discard)(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def _brpop_start(self, timeout: int | None = None) -> None:
        self._fetching = None
        queues = self.active_queues
        if not queues or not self.reliable_fetch:
            super()._brpop_start(timeout)
            return
        if len(queues) > 1:
            if not self._warned_stock_fetch:
                self._warned_stock_fetch = True
                logger.warning("reliable fetch covers one queue per worker; %s: BRPOP", queues)
            super()._brpop_start(timeout)
            return
        queue = queues[0]
        self._release_processing_lists(keep=queue)  # queues no longer consumed (e.g. replies)
        processing = self._processing_list(queue)
        if monotonic() - self._renewed_at > self.fetch_lease / 3:
            self._prepared = False  # never block on a list whose lease may have run out
        if not self._prepared:
            self._prepare(queue, processing)
        if timeout is None:
            timeout = self.brpop_timeout
        self._fetching = queue, processing
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command("BLMOVE", queue, processing, "RIGHT", "LEFT", timeout)

    def _prepare(self, queue: str, processing: str) -> None:
        """Renew the lease, return leftovers, promote lower priorities (before blocking)."""
        returned, *taken_over = self._run(
            "prepare", keys=self._fetch_keys(processing, queue), args=[self.fetch_lease]
        )
        self._renewed_at = monotonic()
        if returned:
            logger.warning("gave %d fetched, unclaimed message(s) back to %r", returned, queue)
        self._take_over(taken_over)
        self._prepared = True

    def _brpop_read(self, **options: Any) -> bool:
        fetching, self._fetching = self._fetching, None
        if fetching is None:
            return bool(super()._brpop_read(**options))
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                self._prepared = False  # the reply may have been lost: return it next time
                raise
            if item is None:
                self._prepared = False  # idle: renew, and look at lower priorities next time
                raise virtual.Empty()
            try:
                self._claim_and_deliver(*fetching, item)
            except Exception:
                self._prepared = False  # if still in the processing list, the next fetch returns it
                raise
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _claim_and_deliver(self, queue: str, processing: str, item: bytes) -> None:
        try:
            payload, tag, record = self._parse(item)
        except (ValueError, LookupError, TypeError) as exc:
            self._set_aside(processing, item, exc)
            raise virtual.Empty() from None
        if queue in self._no_ack_queues:
            record = ""  # no ack will come: not recorded as unacked
        claimed = self._run(
            "claim",
            keys=self._fetch_keys(processing, queue),
            args=[self.fetch_lease, item, tag, time(), record],
        )
        self._renewed_at = monotonic()
        if not claimed:
            logger.warning("fetched message %s was given back to its queue meanwhile", tag)
            raise virtual.Empty()
        self._claimed_tag = tag if record else None
        try:
            self.connection._deliver(payload, queue)
        finally:
            # Not taken by our QoS.append: no consumer took it, and kombu re-queued it through
            # another channel; its unacked record is that channel's business now.
            self._claimed_tag = None

    @staticmethod
    def _parse(item: bytes) -> tuple[dict[str, Any], str, str]:
        """The message, its delivery tag, and kombu's unacked record of it."""
        payload = loads(item)
        properties = payload["properties"]
        delivery = properties["delivery_info"]
        record = dumps([payload, delivery["exchange"], delivery["routing_key"]])
        return payload, str(properties["delivery_tag"]), record

    def _set_aside(self, processing: str, item: bytes, error: Exception) -> None:
        self._run("reject", keys=[*self._shared_keys, processing, REJECTED_KEY], args=[item])
        logger.error(
            "set aside a fetched item that is not a kombu message (%s: %s) in Redis list %r",
            type(error).__name__,
            error,
            REJECTED_KEY,
        )

    def take_claimed(self, delivery_tag: str) -> bool:
        """True once for the message being delivered: its unacked record is already written."""
        if delivery_tag != self._claimed_tag:
            return False
        self._claimed_tag = None
        return True

    # -- leases --------------------------------------------------------------------------------

    def sweep_processing_lists(self) -> None:
        """Renew this channel's leases; take over the lists and jobs of expired ones."""
        if not self.reliable_fetch:
            return
        try:
            returned, *taken_over = self._run("sweep", **self._renewal())
        except (*self.connection_errors, self.ResponseError):
            logger.warning("processing-list sweep skipped", exc_info=True)
            return
        self._renewed_at = monotonic()
        if returned:
            logger.warning("gave %d message(s) fetched by lost workers back", returned)
        self._take_over(taken_over)

    def renew_leases(self) -> None:
        """The lease keeper's beat (its own thread): this channel is alive."""
        if self._processing:
            self._run("renew", **self._renewal())
            self._renewed_at = monotonic()

    def _renewal(self) -> dict[str, list[Any]]:
        processing = dict(self._processing)  # a copy: the event loop may change it meanwhile
        return {
            "keys": [*self._shared_keys, *processing.values()],
            "args": [self.fetch_lease, self.owned_key, *processing],
        }

    def _take_over(self, owned_and_tags: list[bytes]) -> None:
        """Put a lost worker's unacked jobs back in their queues now, not at the visibility
        timeout, with kombu's own restore (a job acked or restored meanwhile is left alone);
        then drop each from the lost worker's owned set. An error leaves the rest to the next
        sweep: the lost worker's list stays tracked until its owned set is empty."""
        pairs = list(zip(owned_and_tags[::2], owned_and_tags[1::2], strict=True))
        try:
            with self.conn_or_acquire() as client:
                for owned, tag in pairs:
                    self.qos.restore_by_tag(tag, client=client)
                    client.srem(owned, tag)
        except (*self.connection_errors, self.ResponseError):
            logger.warning("taking over a lost worker's jobs was cut short", exc_info=True)
            return
        if pairs:
            logger.warning(
                "took over %d job(s) of a worker silent for %ss", len(pairs), self.fetch_lease
            )

    def close(self) -> None:
        """Stop like kombu's channel (draining a reply in flight, restoring the jobs it holds),
        then give our lists and leases up; if a job could not be restored, keep them, so that
        the other workers take it over when the lease runs out."""
        if self._in_poll:
            self._closing = True
            with contextlib.suppress(virtual.Empty):
                self._brpop_read()
        if self.closed:  # Celery closes a channel twice, the second time without connection
            super().close()
            return
        self._lease_keeper.stop()
        client = self._create_client()  # kombu's close drops the channel's pools and connection
        try:
            super().close()
            self._give_up_leases(client)
        finally:
            client.connection_pool.disconnect()

    def _give_up_leases(self, client: Any) -> None:
        try:
            held = client.scard(self.owned_key)
            if held:
                logger.warning("%d job(s) not restored at close: the lease will hand them on", held)
                return
            self._release_processing_lists(client=client)
            client.delete(self.owned_key)
        except (*self.connection_errors, self.ResponseError):
            logger.warning("could not give the leases up; they will expire", exc_info=True)

    def _release_processing_lists(self, keep: str | None = None, client: Any = None) -> None:
        """Give back the lists of every queue but ``keep``; a lease expiry covers a failure."""
        for queue in [queue for queue in self._processing if queue != keep]:
            processing = self._processing.pop(queue)
            try:
                keys = [*self._shared_keys, processing, queue]
                self._run("release", keys=keys, args=[], client=client)
            except (*self.connection_errors, self.ResponseError):
                logger.warning("could not release a processing list; its lease will expire")

    def _on_connection_disconnect(self, connection: Any) -> None:
        if self._in_poll is connection:
            self._fetching = None  # that BLMOVE's reply is lost; the next prepare gives it back
        self._prepared = False
        super()._on_connection_disconnect(connection)

    # -- helpers -------------------------------------------------------------------------------

    def _server_version(self) -> tuple[int, ...]:
        """The server's version; ``(0,)`` (so: no reliable fetch) where INFO is disabled."""
        try:
            with self.conn_or_acquire() as client:
                return redis_version(client.info("server"))
        except self.ResponseError:
            return (0,)

    @property
    def _shared_keys(self) -> list[str]:
        """The first four keys of every script (see worker/fetch_scripts.py)."""
        return [LEASES_KEY, SOURCES_KEY, OWNERS_KEY, self.unacked_key]

    def _fetch_keys(self, processing: str, queue: str) -> list[str]:
        """The keys of PREPARE and CLAIM: shared, processing, queue, owned, unacked index (used
        by CLAIM only), then the queue's lower-priority lists."""
        lower = [self._q_for_pri(queue, pri) for pri in self.priority_steps[1:]]
        return [
            *self._shared_keys,
            *(processing, queue, self.owned_key, self.unacked_index_key),
            *lower,
        ]

    def _processing_list(self, queue: str) -> str:
        if queue not in self._processing:
            self._processing[queue] = f"{LEASES_KEY}.{queue}.{self._token}"
            self._prepared = False
            self._lease_keeper.start_once()
        return self._processing[queue]

    @cached_property
    def _scripts(self) -> dict[str, Script]:
        return {name: self.client.register_script(lua) for name, lua in SCRIPTS.items()}

    def _run(self, script: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        """Run one of our Lua scripts on a pooled connection (never the blocked fetch one)."""
        with self.conn_or_acquire(client) as client:
            return self._scripts[script](keys=keys, args=args, client=client)


class LeaseKeeper:
    """Renews a channel's leases from its own thread, a third of a lease apart.

    The event loop's sweeps renew them too, but a worker's event loop stops during a warm
    shutdown while its threads finish their jobs, and a live worker must never look dead.
    """

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start_once(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._beat, name="zapi-queue lease keeper", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _beat(self) -> None:
        while not self._stopped.wait(self._channel.fetch_lease / 3):
            try:
                self._channel.renew_leases()
            except Exception:
                logger.warning("lease renewal failed; retrying", exc_info=True)


class Transport(KombuTransport):
    """``redis://`` with reliable fetch; select it with ``broker_transport``."""

    Channel = Channel
