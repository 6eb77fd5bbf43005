"""Leases, sweeps and takeovers of the reliable channel: a crashed worker's jobs resume after a
lease, not after the visibility timeout.

Each processing list holds a **lease** in Redis, renewed at every claim, at every restore sweep
(``unacked_restore_interval``), before any fetch when the last renewal is older than a third of
the lease, and by a :class:`LeaseKeeper` thread (so a warm shutdown never looks like a death). A
renewal also refreshes the unacked index of the channel's jobs: kombu's visibility timeout then
only ever restores jobs whose holder stopped renewing, so a live worker keeps a job with a far
``eta`` instead of seeing it handed to a second worker.

When a lease expires, any worker's sweep (and any idle fetch) moves the processing list's
messages back to the head of their queue and restores the owner's unacked jobs at once.

**Takeovers after a Redis-wide outage.** When nobody could renew for longer than a lease, every
lease looks expired once Redis is back. A channel only takes others over when its own renewals
have succeeded for half a lease, which gives live workers the time to renew theirs.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

from kombu.utils.encoding import bytes_to_str

from worker.background import BackgroundThread
from worker.fetch_acks import Acks

#: One logger for the whole transport, as before its split: "worker.transport".
logger = logging.getLogger("worker.transport")


class Leases(Acks):
    """The channel's processing lists (queue -> list), their leases, and the sweep that takes
    over the lists and jobs of channels whose leases ran out."""

    #: Seconds a channel's processing lists and jobs stay its own without a renewal; then any
    #: worker's sweep takes them over. Renewed by the LeaseKeeper a third of a lease apart.
    fetch_lease = 60

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._processing: dict[str, str] = {}  # queue list -> this channel's processing list
        self._renewed_at = float("-inf")  # monotonic time of our last lease renewal
        self._lease_keeper = LeaseKeeper(self)
        super().__init__(*args, **kwargs)

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


class LeaseKeeper(BackgroundThread):
    """Renews a channel's leases from its own thread, a third of a lease apart.

    The event loop's sweeps renew them too, but a worker's event loop stops during a warm
    shutdown while its threads finish their jobs, and a live worker must never look dead. It
    renews only lists still tracked in Redis, so a renewal racing the channel's close cannot
    re-arm a released lease.
    """

    def __init__(self, channel: Leases) -> None:
        super().__init__("zapi-queue lease keeper")
        self._channel = channel

    def start_once(self) -> None:
        self._start_thread()

    def stop(self, timeout: float = 0.0) -> None:
        """Only tells the thread to end: a channel's close must not wait for a renewal."""
        self._stop.set()

    def _run(self) -> None:
        channel = self._channel
        while not self._stop.wait(channel.fetch_lease / 3):
            try:
                channel.renew_leases()
            except (*channel.connection_errors, channel.ResponseError) as exc:
                channel.trouble("a lease renewal", exc)
            except Exception:
                logger.warning("lease renewal failed; retrying", exc_info=True)
