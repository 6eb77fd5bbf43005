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
3. Each processing list holds a **lease** in Redis, renewed at every claim, at every restore
   sweep (``unacked_restore_interval``), before any fetch when the last renewal is older than a
   third of the lease, and by a keeper thread (so a warm shutdown never looks like a death). A
   renewal also refreshes the unacked index of the channel's jobs: kombu's visibility timeout
   then only ever restores jobs whose holder stopped renewing, so a live worker keeps a job
   with a far ``eta`` instead of seeing it handed to a second worker.
4. When a lease expires, any worker's sweep (and any idle fetch) moves the processing list's
   messages back to the head of their queue and restores the owner's unacked jobs at once: a
   crashed worker's jobs resume after ``fetch_lease``, not after the visibility timeout.

**Taking ahead.** When a claim sees more messages queued, the next fetch does not block: it
moves up to ``MAX_TAKE`` of them (no more than the consumer's free prefetch slots) into the
processing list in one script, and one claim records them all. Under load a job costs a
fraction of a fetch and of a claim instead of one of each; with nothing queued, the next fetch
is a ``BLMOVE`` as before. Each message is in Redis throughout, as above.

**Arrivals.** With the ``arrival_index`` option (a dotted path), the claim also registers the
message in a line (a sorted set) the callable names, in the same script: the app puts each
order update in its order's line as it is fetched, before any later update of that order can
start (tasks/state/orders.py). The transport itself knows nothing of orders.

**Ownership.** Acks and restores are checked against the holders hash: a worker that stalled past
its lease (a frozen VM, SIGSTOP, a stalled Redis) and then resumes cannot delete, nor re-queue, a
job that another worker took over meanwhile. A takeover restores a job and drops it from its old
owner's set in one transaction.

**Redis errors do not stop a worker.** An error reply to a fetch or a claim (``OOM`` under
``noeviction``, ``READONLY`` after a failover, ``NOPERM``...) pauses fetching with a growing
backoff, logged once per episode, instead of reaching Celery as an unrecoverable error. An ack
or a re-queue that fails is kept and retried at each sweep; the job stays in Redis meanwhile,
unacked and owned, so the lease hands it on if this worker dies first.

**Takeovers after a Redis-wide outage.** When nobody could renew for longer than a lease, every
lease looks expired once Redis is back. A channel only takes others over when its own renewals
have succeeded for half a lease, which gives live workers the time to renew theirs.

**Closing** is kombu's close and nothing more: no I/O of its own (Celery bounds the teardown of
a half-open broker connection, celery/celery#9705, and an extra round trip there would hang).
The jobs it holds are restored, as kombu does. Its lease then runs out: any sweep returns what
its processing list may hold and forgets it, and takes over whatever could not be restored.

Lower-priority lists (kombu's ``queue\\x06\\x163``...) feed the main list whenever it is empty, so
one blocking ``BLMOVE`` serves every priority; a lower-priority message that arrives while workers
block on an empty main list waits up to ``brpop_timeout`` (1 s). An item that is not a kombu
message is set aside in ``REJECTED_KEY`` (capped).

Reliable fetch needs Redis 6.2 (``LMOVE``), a single consumed queue per channel and no
``global_keyprefix``; otherwise the channel says so in the log and fetches as kombu does. This
module imports nothing of the app that pulls Celery tasks or settings in (only the leaf
``tasks.backoff``): kombu loads it by name.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from time import monotonic
from typing import Any

from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.imports import symbol_by_name
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from tasks.backoff import backoff
from tasks.state.keys import (
    HOLDERS_KEY,
    LEASES_KEY,
    MAX_TAKE,
    OWNED_PREFIX,
    REJECTED_KEY,
    REJECTED_MAX,
)
from tasks.state.scripts import BoundScript
from worker.fetch_scripts import FETCH_SCRIPTS, TAKE_SCRIPT, library_keys
from worker.redis_errors import describe as describe_redis_error

#: Untyped on purpose: celery-types' kombu stubs cover the public API, and this module overrides
#: private methods of kombu's Redis channel (pinned in pyproject.toml; tests/test_transport.py).
kombu_redis: Any = importlib.import_module("kombu.transport.redis")
KombuQoS: Any = kombu_redis.QoS
KombuChannel: Any = kombu_redis.Channel
KombuTransport: Any = kombu_redis.Transport
KombuSentinelChannel: Any = kombu_redis.SentinelChannel
KombuSentinelTransport: Any = kombu_redis.SentinelTransport

logger = logging.getLogger(__name__)

#: Redis 6.2 brought LMOVE and BLMOVE.
MIN_REDIS_VERSION = (6, 2)
#: Pause of the fetch loop after an error reply from Redis: backoff base and cap (seconds).
FETCH_BACKOFF = (0.25, 2.0)
#: A claimed message's arrival fields when it stands in no line (see CLAIM).
NO_ARRIVAL = ("", "", 0, "0", "")


@dataclass(frozen=True, slots=True)
class Arrival:
    """A fetched message's place in a line (a sorted set ``line``, with per-member times in the
    hash ``jobs``): the claim registers ``member`` there, at ``position`` (None: Redis' clock,
    µs, so in the order workers fetch them), unless it is there already. Both keys get ``ttl``.
    ``settles``: the member must wait a moment before it goes (tasks/state/orders.py).
    ``due``: when a message with an ``eta`` (a countdown) may run, µs of the epoch: its member
    counts as seen until then, and as coming back then, however far that is (within ``ttl``)."""

    line: str
    jobs: str
    member: str
    position: int | None
    ttl: int
    settles: bool
    due: int | None = None

    def args(self) -> tuple[str, str, int, str, str]:
        position = "" if self.position is None else str(self.position)
        due = "" if self.due is None else str(self.due)
        return self.member, position, self.ttl, "1" if self.settles else "0", due


def redis_version(info: dict[str, Any]) -> tuple[int, ...]:
    """``(6, 2, 14)`` from ``INFO server``; servers that hide it count as new enough."""
    raw = str(info.get("redis_version", "99"))
    return tuple(int(part) for part in raw.split(".") if part.isdigit())


class QoS(KombuQoS):
    """Kombu's ack emulation, ownership-checked, and never raising a Redis error at a caller
    that cannot handle it (a task thread acking, the event loop's sweep)."""

    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.take_claimed(delivery_tag):
            virtual.QoS.append(self, message, delivery_tag)  # in memory only
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        try:
            self.channel.settle(delivery_tag, requeue=False)
        finally:
            virtual.QoS.ack(self, delivery_tag)  # the prefetch slot is free either way

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            self.channel.settle(delivery_tag, requeue=requeue)
        finally:
            virtual.QoS.ack(self, delivery_tag)

    def restore_by_tag(
        self, tag: str, client: Any = None, leftmost: bool = False, owned: str | None = None
    ) -> None:
        """Kombu's restore, in one transaction with the holders: the job's holder loses it.

        With ``owned``, only if that owned set still holds the job (or nobody does); the tag
        leaves ``owned`` in any case."""
        channel = self.channel

        def restore_transaction(pipe: Any) -> None:
            raw = pipe.hget(self.unacked_key, tag)
            holder = pipe.hget(HOLDERS_KEY, tag)
            holder = bytes_to_str(holder) if holder is not None else None
            pipe.multi()
            if owned is not None:
                pipe.srem(owned, tag)
                if holder is not None and holder != owned:
                    return  # another channel holds it now: not ours to re-queue
            pipe.zrem(self.unacked_index_key, tag)
            pipe.hdel(self.unacked_key, tag)
            pipe.hdel(HOLDERS_KEY, tag)
            if holder is not None:
                pipe.srem(holder, tag)
            if raw:
                payload, exchange, routing_key = loads(bytes_to_str(raw))
                channel._do_restore_message(payload, exchange, routing_key, pipe, leftmost)

        with channel.conn_or_acquire(client) as client:
            client.transaction(restore_transaction, self.unacked_key, HOLDERS_KEY)

    def restore_unacked(self, client: Any = None) -> list[Any]:
        """At close: put this channel's jobs back. One that cannot be restored stays unacked and
        owned in Redis, so the lease hands it on: nothing for kombu's emergency dump, and no
        error out of a close (Celery would stop the worker; kombu's own restore raises an
        AttributeError when the connection was released before the channel closed)."""
        tags = list(self._delivered)
        self._delivered.clear()
        try:
            self.channel.restore_owned(tags, client=client)
        except Exception as exc:  # noqa: BLE001 - a close must finish; the lease covers it
            logger.warning(
                "%d job(s) not restored at close (%s): the lease will hand them on",
                len(tags),
                type(exc).__name__,
            )
        return []

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Kombu's periodic sweep: also renew our leases, take over dead workers' jobs, and
        retry the acks and re-queues that failed."""
        self.channel.sweep_processing_lists()
        try:
            super().restore_visible(*args, **kwargs)
        except self.channel.ResponseError as exc:
            self.channel.trouble("the visibility sweep", exc)


class Channel(KombuChannel):
    """A Redis channel that fetches with ``BLMOVE`` into a leased processing list."""

    QoS = QoS

    #: Seconds a channel's processing lists and jobs stay its own without a renewal; then any
    #: worker's sweep takes them over. Renewed by the LeaseKeeper a third of a lease apart.
    fetch_lease = 60

    #: Dotted path of a callable telling where a fetched message stands in a line (an
    #: :class:`Arrival`), registered atomically with the claim; None: no lines.
    arrival_index: str | None = None

    from_transport_options = (
        *KombuChannel.from_transport_options,
        "fetch_lease",
        "arrival_index",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._processing: dict[str, str] = {}  # queue list -> this channel's processing list
        #: (queue, processing, the command sent: BLMOVE or EVAL of TAKE) of the fetch in flight.
        self._fetching: tuple[str, str, str] | None = None
        #: The last claim saw more messages queued: the next fetch takes them, without blocking.
        self._read_ahead = False
        self._claimed_tags: set[str] = set()
        self._no_ack_queues: set[str] = set()
        self._prepared = False
        self._renewed_at = float("-inf")  # monotonic time of our last lease renewal
        self._healthy_since: float | None = None  # renewals have succeeded since then
        self._fetch_paused_until = 0.0
        self._trouble: _Episode | None = None
        self._warned_stock_fetch = False
        #: Acks ("ack") and re-queues ("restore") that Redis refused, retried at each sweep.
        self._unsettled: dict[str, str] = {}
        self._shared_client: Any = None  # see conn_or_acquire
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
        if monotonic() < self._fetch_paused_until:
            return  # backing off after an error reply; the event loop calls again
        queue = queues[0]
        try:
            self._release_processing_lists(keep=queue)  # queues no longer consumed
            processing = self._processing_list(queue)
            if monotonic() - self._renewed_at > self.fetch_lease / 3:
                self._prepared = False  # never block on a list whose lease may have run out
            if not self._prepared:
                self._prepare(queue, processing)
        except self.ResponseError as exc:
            self.trouble("a fetch", exc)
            return
        if timeout is None:
            timeout = self.brpop_timeout
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        batch = self._batch_size()
        if self._read_ahead and batch > 0:
            # Sent, not called: the event loop reads its reply as it reads BLMOVE's, which a
            # registered script (EVALSHA, then a SCRIPT LOAD on NOSCRIPT) cannot be. Redis keeps
            # an EVAL's script by digest; the text costs its bytes on the socket only.
            self._fetching = queue, processing, "EVAL"
            keys, args = TAKE_SCRIPT.positions(
                {"queue": queue, "processing": processing, "most": batch}
            )
            self.client.connection.send_command("EVAL", TAKE_SCRIPT.text, len(keys), *keys, *args)
        else:
            self._fetching = queue, processing, "BLMOVE"
            command = ("BLMOVE", queue, processing, "RIGHT", "LEFT", timeout)
            self.client.connection.send_command(*command)

    def _batch_size(self) -> int:
        """How many messages the next fetch may take: the consumer's free prefetch slots."""
        free = self.qos.can_consume_max_estimate()
        return MAX_TAKE if free is None else min(MAX_TAKE, free)

    def _prepare(self, queue: str, processing: str) -> None:
        """Renew the lease, return leftovers, promote lower priorities (before blocking)."""
        returned, *taken_over = self._run(
            "prepare",
            processing=processing,
            queue=queue,
            owned=self.owned_key,
            lower=self._lower_priorities(queue),
            lease=self.fetch_lease,
            may_take_over=self._may_take_over(),
        )
        self._renewed()
        if returned:
            logger.warning("gave %d fetched, unclaimed message(s) back to %r", returned, queue)
        self._take_over(taken_over)
        self._prepared = True

    def _brpop_read(self, **options: Any) -> bool:
        fetching, self._fetching = self._fetching, None
        if fetching is None:
            return bool(super()._brpop_read(**options))
        queue, processing, command = fetching
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                self._lost_reply()
                raise
            except self.ResponseError as exc:
                self.trouble("a fetch", exc)
                raise virtual.Empty() from None
            items = [] if reply is None else reply if command == "EVAL" else [reply]
            self._read_ahead = False  # until a claim sees more messages queued
            if not items:
                if command == "BLMOVE":
                    self._prepared = False  # idle: renew, and look at lower priorities next time
                self._recovered()
                raise virtual.Empty()
            try:
                self._claim_and_deliver(queue, processing, items)
            except self.ResponseError as exc:
                self._lost_reply()  # still in the processing list: the next prepare returns it
                self.trouble("a claim", exc)
                raise virtual.Empty() from None
            except Exception:
                self._lost_reply()
                raise
            self._recovered()
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _lost_reply(self) -> None:
        """A fetched message may wait in the processing list: the next prepare returns it."""
        self._prepared = False
        self._read_ahead = False

    def _claim_and_deliver(self, queue: str, processing: str, items: list[bytes]) -> None:
        """Claim the fetched messages in one round trip, then hand each to its consumer."""
        fetched = []
        for item in items:
            try:
                payload, tag, record = self._parse(item)
            except (ValueError, LookupError, TypeError) as exc:
                self._set_aside(processing, item, exc)
                continue
            if queue in self._no_ack_queues:
                record = ""  # no ack will come: not recorded as unacked
            fetched.append((item, payload, tag, record, self._arrival(payload)))
        if not fetched:
            raise virtual.Empty()
        lines: list[str] = []  # each message's line and jobs (placeholders when it has none)
        messages: list[Any] = []
        for item, _, tag, record, arrival in fetched:
            lines += [arrival.line, arrival.jobs] if arrival else [processing, processing]
            messages += [item, tag, record, *(arrival.args() if arrival else NO_ARRIVAL)]
        answers, queued = self._run(
            "claim",
            processing=processing,
            queue=queue,
            owned=self.owned_key,
            lines=[*lines, *self._lower_priorities(queue)],  # CLAIM finds them after the lines
            lease=self.fetch_lease,
            count=len(fetched),
            messages=messages,
        )
        self._renewed()
        self._read_ahead = int(queued) > 0
        claimed = [message for message, answer in zip(fetched, answers, strict=True) if answer]
        if len(claimed) < len(fetched):
            logger.warning(
                "%d fetched message(s) given back to their queue meanwhile",
                len(fetched) - len(claimed),
            )
        if not claimed:
            raise virtual.Empty()
        for n, (_, payload, tag, record, _) in enumerate(claimed):
            if record:
                self._claimed_tags.add(tag)
            try:
                self.connection._deliver(payload, queue)
            except Exception:
                # The others are claimed but will not be delivered now: back to their queue.
                self.restore_owned([tag for _, _, tag, record, _ in claimed[n + 1 :] if record])
                raise
            finally:
                # Not taken by our QoS.append: no consumer took it, and kombu re-queued it
                # through another channel; its unacked record is that channel's business now.
                self._claimed_tags.discard(tag)

    @staticmethod
    def _parse(item: bytes) -> tuple[dict[str, Any], str, str]:
        """The message, its delivery tag, and kombu's unacked record of it."""
        payload = loads(item)
        properties = payload["properties"]
        delivery = properties["delivery_info"]
        # kombu's record is dumps([payload, exchange, routing_key]); the payload's own JSON text
        # is already here, so it is not encoded again.
        route = dumps([delivery["exchange"], delivery["routing_key"]])
        record = f"[{bytes_to_str(item)}, {route[1:]}"
        return payload, str(properties["delivery_tag"]), record

    def _set_aside(self, processing: str, item: bytes, error: Exception) -> None:
        self._run(
            "reject", processing=processing, rejected=REJECTED_KEY, item=item, most=REJECTED_MAX
        )
        logger.error(
            "set aside a fetched item that is not a kombu message (%s: %s) in Redis list %r",
            type(error).__name__,
            error,
            REJECTED_KEY,
        )

    def take_claimed(self, delivery_tag: str) -> bool:
        """True once for a message being delivered: its unacked record is already written."""
        if delivery_tag not in self._claimed_tags:
            return False
        self._claimed_tags.discard(delivery_tag)
        return True

    # -- acks and re-queues --------------------------------------------------------------------

    def settle(self, delivery_tag: str, *, requeue: bool) -> None:
        """Ack (or re-queue) a job this channel holds. If Redis fails, the job stays unacked and
        owned in Redis, and the next sweep tries again. A connection error is raised too, as
        kombu does (Celery logs it); an error reply is not: Celery would stop the worker.

        A job that finishes after its channel closed (Celery replaces the channel when the
        connection drops, while the task threads run on) has nothing left to settle: the close
        gave it back to its queue, or left it to the lease; kombu's own ack would raise here,
        and Celery would stop the worker."""
        if self.closed or self.connection is None:
            logger.debug("job %s finished after its channel closed: not acked", delivery_tag)
            return
        try:
            self._settle(delivery_tag, requeue)
        except (*self.connection_errors, self.ResponseError) as exc:
            self._unsettled[delivery_tag] = "restore" if requeue else "ack"
            self.trouble("an ack" if not requeue else "a re-queue", exc)
            if not isinstance(exc, self.ResponseError):
                raise
        else:
            self._unsettled.pop(delivery_tag, None)

    def _settle(self, delivery_tag: str, requeue: bool) -> None:
        if not self.reliable_fetch:  # kombu's own records: no holders, no owned set
            if requeue:
                KombuQoS.restore_by_tag(self.qos, delivery_tag, leftmost=True)
            else:
                self.qos._remove_from_indices(delivery_tag).execute()
            return
        if requeue:
            self.qos.restore_by_tag(delivery_tag, leftmost=True, owned=self.owned_key)
        else:
            self._run("ack", owned=self.owned_key, tag=delivery_tag)

    def _settle_pending(self) -> None:
        for tag, how in list(self._unsettled.items()):
            self._settle(tag, how == "restore")
            self._unsettled.pop(tag, None)

    def restore_owned(self, tags: list[str], client: Any = None) -> None:
        """Put these jobs of ours back in their queue; what fails stays for the lease."""
        left = 0
        for tag in tags:
            try:
                self.qos.restore_by_tag(tag, client=client, owned=self.owned_key)
            except (*self.connection_errors, self.ResponseError):
                left += 1
        if left:
            logger.warning("%d job(s) not restored now: the lease will hand them on", left)

    # -- leases --------------------------------------------------------------------------------

    def sweep_processing_lists(self) -> None:
        """Renew this channel's leases; take over the lists and jobs of expired ones; retry the
        acks and re-queues Redis refused."""
        if not self.reliable_fetch:
            return
        try:
            returned, *taken_over = self._run(
                "sweep", **self._renewal(only_tracked=False, take_over=self._may_take_over())
            )
            self._renewed()
            self._settle_pending()
        except (*self.connection_errors, self.ResponseError) as exc:
            self.trouble("the processing-list sweep", exc)
            return
        if returned:
            logger.warning("gave %d message(s) fetched by lost workers back", returned)
        self._take_over(taken_over)

    def renew_leases(self) -> None:
        """The lease keeper's beat (its own thread): this channel is alive."""
        if self._processing and not self.closed:
            self._run("renew", **self._renewal(only_tracked=True, take_over="0"))
            self._renewed()

    def _renewal(self, *, only_tracked: bool, take_over: str) -> dict[str, Any]:
        """The arguments of RENEW and SWEEP: this channel's lists and the queue of each."""
        processing = dict(self._processing)  # a copy: the event loop may change it meanwhile
        return {
            "processing_lists": list(processing.values()),
            "lease": self.fetch_lease,
            "owned": self.owned_key,
            "only_tracked": "1" if only_tracked else "0",
            "may_take_over": take_over,
            "queues": list(processing),
        }

    def _renewed(self) -> None:
        now = monotonic()
        self._renewed_at = now
        if self._healthy_since is None:
            self._healthy_since = now

    def _may_take_over(self) -> str:
        """'1' once our own renewals have succeeded for half a lease: after a Redis-wide
        outage every lease looks expired, and live workers need the time to renew theirs."""
        since = self._healthy_since
        return "1" if since is not None and monotonic() - since >= self.fetch_lease / 2 else "0"

    def _take_over(self, owned_and_tags: list[bytes]) -> None:
        """Put a lost worker's unacked jobs back in their queues now, not at the visibility
        timeout: each in one transaction that also drops it from the lost worker's owned set,
        and only while that worker still holds it. An error leaves the rest to the next sweep:
        the lost worker's list stays tracked until its owned set is empty."""
        pairs = list(zip(owned_and_tags[::2], owned_and_tags[1::2], strict=True))
        try:
            with self.conn_or_acquire() as client:
                for owned, tag in pairs:
                    self.qos.restore_by_tag(
                        bytes_to_str(tag), client=client, owned=bytes_to_str(owned)
                    )
        except (*self.connection_errors, self.ResponseError):
            logger.warning("taking over a lost worker's jobs was cut short", exc_info=True)
            return
        if pairs:
            logger.warning(
                "took over %d job(s) of a worker silent for %ss", len(pairs), self.fetch_lease
            )

    # -- errors --------------------------------------------------------------------------------

    def trouble(self, what: str, exc: Exception) -> None:
        """Redis failed an operation (an error reply, a lost connection): back the fetch loop
        off; log once per episode. Takeovers wait until renewals have succeeded again for half
        a lease (see :meth:`_may_take_over`)."""
        self._healthy_since = None
        episode = self._trouble
        if episode is None:
            episode = self._trouble = _Episode(monotonic())
            logger.warning(
                "Redis failed %s (%s); backing off, the worker keeps running",
                what,
                describe_redis_error(exc),  # "OOM: ...", whichever Redis version said it
            )
        episode.failures += 1
        delay = backoff(episode.failures, base=FETCH_BACKOFF[0], cap=FETCH_BACKOFF[1])
        self._fetch_paused_until = monotonic() + delay

    def _recovered(self) -> None:
        episode, self._trouble = self._trouble, None
        if episode is not None:
            logger.warning(
                "Redis answers again: fetching resumed after %.1fs (%d refusals)",
                monotonic() - episode.started,
                episode.failures,
            )

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Kombu's close, nothing more (see the module docstring): the lease keeper stops, and
        kombu restores the jobs the channel holds, through our ownership-checked restore.
        What could not be restored, the lease hands on."""
        self._lease_keeper.stop()
        super().close()

    def _release_processing_lists(self, keep: str | None = None) -> None:
        """Give back the lists of every queue but ``keep`` (no longer consumed by this live
        channel, whose other lease covers its jobs); a lease expiry covers a failure."""
        for queue in [queue for queue in self._processing if queue != keep]:
            processing = self._processing.pop(queue)
            try:
                self._run(
                    "release", processing=processing, queue=queue, owned=self.owned_key, keep="0"
                )
            except (*self.connection_errors, self.ResponseError):
                logger.warning("could not release a processing list; its lease will expire")

    def _on_connection_disconnect(self, connection: Any) -> None:
        if self._in_poll is connection:
            self._fetching = None  # that fetch's reply is lost; the next prepare gives it back
        self._lost_reply()
        super()._on_connection_disconnect(connection)

    # -- helpers -------------------------------------------------------------------------------

    def _server_version(self) -> tuple[int, ...]:
        """The server's version; ``(0,)`` (so: no reliable fetch) where INFO is disabled."""
        try:
            with self.conn_or_acquire() as client:
                return redis_version(client.info("server"))
        except self.ResponseError:
            return (0,)

    def _lower_priorities(self, queue: str) -> list[str]:
        """The queue's lower-priority lists (kombu's ``queue\\x06\\x16<n>``), highest first."""
        return [self._q_for_pri(queue, pri) for pri in self.priority_steps[1:]]

    def _arrival(self, payload: dict[str, Any]) -> Arrival | None:
        """Where the fetched message stands in line (``arrival_index``), or None."""
        index = self._arrival_index
        if index is None:
            return None
        try:
            found = index(payload)
        except Exception:
            # The fetch goes on; the task takes its place in line when it starts.
            logger.warning("arrival_index failed on a message", exc_info=True)
            return None
        return Arrival(*found) if found is not None else None

    @cached_property
    def _arrival_index(self) -> Callable[[dict[str, Any]], tuple[Any, ...] | None] | None:
        """The ``arrival_index`` callable: a message -> the fields of an :class:`Arrival`."""
        if not self.arrival_index:
            return None
        index: Callable[[dict[str, Any]], tuple[Any, ...] | None]
        index = symbol_by_name(self.arrival_index)
        return index

    def _processing_list(self, queue: str) -> str:
        if queue not in self._processing:
            self._processing[queue] = f"{LEASES_KEY}.{queue}.{self._token}"
            self._prepared = False
            self._lease_keeper.start_once()
        return self._processing[queue]

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


class _Episode:
    """One stretch of error replies from Redis: logged when it starts and when it ends."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.failures = 0


class LeaseKeeper:
    """Renews a channel's leases from its own thread, a third of a lease apart.

    The event loop's sweeps renew them too, but a worker's event loop stops during a warm
    shutdown while its threads finish their jobs, and a live worker must never look dead. It
    renews only lists still tracked in Redis, so a renewal racing the channel's close cannot
    re-arm a released lease.
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
        channel = self._channel
        while not self._stopped.wait(channel.fetch_lease / 3):
            try:
                channel.renew_leases()
            except (*channel.connection_errors, channel.ResponseError) as exc:
                channel.trouble("a lease renewal", exc)
            except Exception:
                logger.warning("lease renewal failed; retrying", exc_info=True)


class Transport(KombuTransport):
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


class SentinelTransport(KombuSentinelTransport):
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
