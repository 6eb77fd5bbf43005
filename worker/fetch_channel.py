"""The reliable channel's fetch and claim: a fetched message is in Redis throughout.

**Fetch** moves the message atomically into this channel's processing list (``BLMOVE queue
processing``); **claim** then moves it, in one Lua script, from the processing list into kombu's
``unacked`` hash, this channel's owned set and the holders hash (tag -> owned set), and renews
the lease. A reply lost in between leaves the message in the processing list: the next
``prepare`` (before the next blocking fetch) gives it back to its queue.

**Taking ahead.** When a claim sees more messages queued, the next fetch does not block: it
moves up to ``MAX_TAKE`` of them (no more than the consumer's free prefetch slots) into the
processing list in one script, and one claim records them all. Under load a job costs a
fraction of a fetch and of a claim instead of one of each; with nothing queued, the next fetch
is a ``BLMOVE`` as before. Each message is in Redis throughout, as above.

**Arrivals.** With the ``arrival_index`` option (a dotted path), the claim also registers the
message in a line (a sorted set) the callable names, in the same script: the app puts each
order update in its order's line as it is fetched, before any later update of that order can
start (tasks/state/orders.py). The transport itself knows nothing of orders.

Lower-priority lists (kombu's ``queue\\x06\\x163``...) feed the main list whenever it is empty, so
one blocking ``BLMOVE`` serves every priority; a lower-priority message that arrives while workers
block on an empty main list waits up to ``brpop_timeout`` (1 s). An item that is not a kombu
message is set aside in ``REJECTED_KEY`` (capped).

**Closing** is kombu's close and nothing more: no I/O of its own (Celery bounds the teardown of
a half-open broker connection, celery/celery#9705, and an extra round trip there would hang).
The jobs it holds are restored, as kombu does. Its lease then runs out: any sweep returns what
its processing list may hold and forgets it, and takes over whatever could not be restored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any

from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.imports import symbol_by_name
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from tasks.state.keys import LEASES_KEY, MAX_TAKE, REJECTED_KEY, REJECTED_MAX
from worker.fetch_acks import QoS
from worker.fetch_base import KombuChannel
from worker.fetch_leases import Leases
from worker.fetch_scripts import TAKE_SCRIPT

#: One logger for the whole transport, as before its split: "worker.transport".
logger = logging.getLogger("worker.transport")

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


class Channel(Leases):
    """A Redis channel that fetches with ``BLMOVE`` into a leased processing list."""

    QoS = QoS

    #: Dotted path of a callable telling where a fetched message stands in a line (an
    #: :class:`Arrival`), registered atomically with the claim; None: no lines.
    arrival_index: str | None = None

    from_transport_options = (
        *KombuChannel.from_transport_options,
        "fetch_lease",
        "arrival_index",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: (queue, processing, the command sent: BLMOVE or EVAL of TAKE) of the fetch in flight.
        self._fetching: tuple[str, str, str] | None = None
        #: The last claim saw more messages queued: the next fetch takes them, without blocking.
        self._read_ahead = False
        self._claimed_tags: set[str] = set()
        self._no_ack_queues: set[str] = set()
        self._prepared = False
        self._warned_stock_fetch = False
        #: Set by :meth:`stop_fetching`: this channel fetches no more.
        self._fetch_stopped = False
        super().__init__(*args, **kwargs)

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        no_ack = kwargs.get("no_ack", args[0] if args else False)
        (self._no_ack_queues.add if no_ack else self._no_ack_queues.discard)(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def _brpop_start(self, timeout: int | None = None) -> None:
        self._fetching = None
        if self._fetch_stopped:
            return
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

    def stop_fetching(self) -> int:
        """A stopping worker's first step (worker/drain.py): no fetch after this, and what this
        channel fetched but did not claim goes back to the head of its queue now, not when its
        lease runs out. A fetch in flight is cut (its connection dropped: Redis then moves
        nothing, or the message waits in the processing list, given back here). The leases
        stay while the channel holds jobs, renewed by the lease keeper. Returns the messages
        given back; a Redis error leaves them to the lease."""
        self._fetch_stopped = True
        if not self.reliable_fetch:
            return 0  # kombu's BRPOP: its reply is read, or lost, as kombu does
        if self._fetching is not None:
            self._fetching = None
            self.client.connection.disconnect()
        returned = 0
        for queue, processing in list(self._processing.items()):
            try:
                returned += int(
                    self._run(
                        "release",
                        processing=processing,
                        queue=queue,
                        owned=self.owned_key,
                        keep="1",
                    )
                )
            except (*self.connection_errors, self.ResponseError):
                logger.warning("could not give fetched messages back; the lease will")
        self.qos._flush()
        if not self.qos._delivered:
            self._processing.clear()  # released, nothing held: no sweep renews them again
        return returned

    def close(self) -> None:
        """Kombu's close, nothing more (see the module docstring): the lease keeper stops, and
        kombu restores the jobs the channel holds, through our ownership-checked restore.
        What could not be restored, the lease hands on."""
        self._lease_keeper.stop()
        super().close()

    def _on_connection_disconnect(self, connection: Any) -> None:
        if self._in_poll is connection:
            self._fetching = None  # that fetch's reply is lost; the next prepare gives it back
        self._lost_reply()
        super()._on_connection_disconnect(connection)

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
        """This channel's processing list for ``queue``, leased from its first fetch on."""
        if queue not in self._processing:
            self._processing[queue] = f"{LEASES_KEY}.{queue}.{self._token}"
            self._prepared = False
            self._lease_keeper.start_once()
        return self._processing[queue]
