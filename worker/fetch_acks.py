"""Ownership-checked acks and re-queues of the reliable channel, and the QoS that calls them.

**Ownership.** Acks and restores are checked against the holders hash (tag -> the owned set of
the channel holding the job now): a worker that stalled past its lease (a frozen VM, SIGSTOP, a
stalled Redis) and then resumes cannot delete, nor re-queue, a job that another worker took over
meanwhile. A takeover restores a job and drops it from its old owner's set in one transaction.

An ack or a re-queue that Redis refuses is kept and retried at each sweep; a task thread acking
or the event loop's sweep never sees a Redis error it cannot handle.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from tasks.state.keys import HOLDERS_KEY
from worker.fetch_base import KombuQoS
from worker.fetch_errors import ErrorEpisodes

if TYPE_CHECKING:
    from worker.fetch_channel import Channel

#: One logger for the whole transport, as before its split: "worker.transport".
logger = logging.getLogger("worker.transport")


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
            self._slot_freed()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            self.channel.settle(delivery_tag, requeue=requeue)
        finally:
            virtual.QoS.ack(self, delivery_tag)
            self._slot_freed()

    def _slot_freed(self) -> None:
        """Wake a consumer poll that waits for a free slot (worker/fetch_wake.py). A job that
        ends after its channel closed (a lost connection) has no poll to wake."""
        cycle = getattr(self.channel.connection, "cycle", None)
        wake = getattr(cycle, "wake", None)
        if wake is not None:
            wake()

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


class Acks(ErrorEpisodes):
    """Settling the jobs this channel holds: acks and re-queues, checked against the holders,
    kept for the next sweep when Redis refuses them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Acks ("ack") and re-queues ("restore") that Redis refused, retried at each sweep.
        self._unsettled: dict[str, str] = {}
        super().__init__(*args, **kwargs)

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
        """Retry the acks and re-queues Redis refused (at each sweep); an error stops here."""
        for tag, how in list(self._unsettled.items()):
            self._settle(tag, how == "restore")
            self._unsettled.pop(tag, None)

    def hand_back(self, tags: list[str]) -> None:
        """Give these jobs back to the head of their queue now, and forget them here: a
        stopping worker's jobs that will not run here (worker/drain.py). Ownership-checked like
        every restore, their messages as fetched (``eta``, retries and our headers kept); what
        Redis refuses stays unacked and owned, for the lease."""
        self.restore_owned(tags)
        for tag in tags:
            virtual.QoS.ack(self.qos, tag)  # in memory only: nothing left to restore at close
        self.qos._flush()

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
