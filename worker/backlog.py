"""The backlog an autoscaler should see: every unfinished job, and the part of it more workers
would help with. Pure logic over a census (worker/queue_census.py); the exporter serves it.

KEDA's Redis list scaler reads one list with LLEN: prefetched, running, countdown and retrying
jobs are invisible to it, and it reads 0 while every worker is saturated. The census counts
them all, by instance and state. But a big backlog is not a reason to scale by itself: an
instance sends at most ``rate`` jobs a second (its Z-API rate limit), and by Little's law
``rate x send seconds`` jobs in flight keep that limit busy (10 jobs/s at 0.5 s a send: 5
jobs). Beyond that, more workers only wait for rate slots. So the scaling value of an instance
is its due jobs (queued and in workers) capped at ``max(1, rate x send seconds)``.

Scheduled jobs (an eta ahead: a countdown, a retry's backoff, a rate-slot or order-turn wait)
wait in a worker's timer, not in a thread: they need no worker now, and count nothing, except
that while any is held the instance's value is at least 1, so that the fleet keeps one worker
to hold and run them rather than scaling to zero and back. As each falls due it is counted in
workers. An instance the exporter has no rate for (an alias no configuration names) is not
capped: its jobs fail fast, and the exporter cannot tell what would keep it busy.

KEDA divides the fleet's sum by its threshold, a worker's concurrency (128): ``desired =
ceil(sum / 128)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from config.instances import Instance
from worker.queue_census import Census

#: Job ids whose first sighting is remembered (the census reads at most this many unstamped).
FIRST_SEEN_CAP = 10_000


def scaling_jobs(active: int, scheduled: int, rate: float | None, send_seconds: float) -> float:
    """The jobs worth workers now: ``active`` (due) capped at what ``rate`` jobs a second of
    ``send_seconds`` each keep busy (at least one), and 1 while only ``scheduled`` ones wait."""
    busy = float(active) if rate is None else min(float(active), max(1.0, rate * send_seconds))
    return 1.0 if busy < 1 and scheduled > 0 else busy


@dataclass(frozen=True, slots=True)
class InstanceBacklog:
    """One instance's unfinished jobs, its rate limit (None: unknown) and its mean send time."""

    label: str
    queued: int
    scheduled: int
    in_workers: int
    rate: float | None
    send_seconds: float

    @property
    def jobs(self) -> int:
        return self.queued + self.scheduled + self.in_workers

    @property
    def drain_seconds(self) -> float | None:
        """Seconds the instance needs to send them all at its rate limit (None: no rate)."""
        return None if self.rate is None else self.jobs / self.rate

    @property
    def scaling(self) -> float:
        return scaling_jobs(
            self.queued + self.in_workers, self.scheduled, self.rate, self.send_seconds
        )


def backlogs(
    census: Census,
    instances: Iterable[Instance],
    send_seconds: dict[str, float],
    fallback: float,
) -> list[InstanceBacklog]:
    """Each watched instance's backlog (zeros included), then each alias the census found that
    no configuration names, by label. ``send_seconds``: measured means by instance id; an
    instance without one is assumed ``fallback`` (ZAPI_SCALING_SEND_SECONDS)."""
    found = []
    known = set()
    for instance in instances:
        known.add(instance.alias)
        measured = send_seconds.get(instance.instance_id, fallback)
        found.append(
            _backlog(census, instance.alias, instance.label, instance.rate_limit, measured)
        )
    unknown = (set(census.queued) | set(census.scheduled) | set(census.in_workers)) - known
    found += [_backlog(census, alias, alias, None, fallback) for alias in sorted(unknown)]
    return found


def _backlog(
    census: Census, alias: str, label: str, rate: float | None, send_seconds: float
) -> InstanceBacklog:
    return InstanceBacklog(
        label,
        census.queued[alias],
        census.scheduled[alias],
        census.in_workers[alias],
        rate,
        send_seconds,
    )


class Sightings:
    """When this process first saw each job (a lower bound of its age when its producer did
    not stamp it), the most recent ``cap`` remembered."""

    def __init__(self, cap: int = FIRST_SEEN_CAP) -> None:
        self.cap = cap
        self._first: OrderedDict[str, float] = OrderedDict()

    def first(self, job_id: str, now: float) -> float:
        seen = self._first.setdefault(job_id, now)
        self._first.move_to_end(job_id)
        while len(self._first) > self.cap:
            self._first.popitem(last=False)
        return seen

    def oldest_age(self, census: Census, now: float) -> float:
        """Seconds since the oldest unfinished job began, scheduled ones left out (0: none):
        its producer's stamp, else when this process first saw it."""
        since = [census.oldest_stamp] if census.oldest_stamp is not None else []
        for job_id, counts in census.unstamped.items():
            seen = self.first(job_id, now)  # a scheduled job is dated too, for when it is due
            if counts:
                since.append(seen)
        return max(0.0, now - min(since)) if since else 0.0
