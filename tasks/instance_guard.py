"""Keeping a sick Z-API instance from starving the others, within one worker process.

Two guards per instance, both in memory (no Redis round trip on the hot path):

* **In flight**: at most ``ZAPI_INSTANCE_CONCURRENCY`` of this worker's threads (default: half
  of ``WORKER_CONCURRENCY`` when the fleet has several instances, all of them when it has one)
  may be busy with one instance: waiting for its rate slot or
  sending to it. A job that finds its instance full is re-scheduled without using an attempt,
  so an instance whose requests hang until the timeout holds half the threads at most.
* **Breaker**: ``ZAPI_BREAKER_FAILURES`` transient failures in a row (5xx, timeouts, refused
  connections; 0 turns it off) pause the instance's sends on every worker, through its rate
  limiter's pause (doubling at each trip, up to ``ZAPI_RETRY_BACKOFF_MAX``). Its jobs then wait
  for the pause without using attempts. After a trip, one send at a time probes (the
  in-flight limit drops to one): a success closes the breaker, a failure trips it again at once
  (a send that was already on its way when it tripped counts as an ordinary failure). So an
  instance whose requests hang costs one thread per worker, not its whole in-flight share.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from config import Settings, get_settings
from config.instances import Instance
from tasks.per_process import PerInstance


@dataclass
class InstanceGuard:
    """One instance's in-flight permits and consecutive-failure count in this process."""

    capacity: int
    trip_after: int
    _in_flight: int = field(default=0, init=False)
    _failures: int = field(default=0, init=False)
    _tripped_at: float | None = field(default=None, init=False)
    """When the breaker last tripped (perf_counter); None once a send succeeded since."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def probing(self) -> bool:
        """The breaker tripped and no send succeeded since: one send at a time probes."""
        return self._tripped_at is not None

    def try_enter(self) -> bool:
        """Take an in-flight permit if one is free (never blocks): ``capacity`` of them, one
        while probing."""
        with self._lock:
            if self._in_flight >= (1 if self.probing else self.capacity):
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def busy_reason(self) -> str:
        """Why :meth:`try_enter` refused, for the attempt log."""
        if self.probing:
            return "its breaker tripped: one probe at a time, and one is in flight here"
        return f"{self.capacity} sends to it in flight here"

    def succeeded(self) -> None:
        """Z-API answered (a success or a refusal): the instance is reachable."""
        with self._lock:
            self._failures = 0
            self._tripped_at = None

    def failed(self, sent_at: float) -> bool:
        """A transient failure of a send that left at ``sent_at`` (perf_counter); True when the
        breaker trips now: ``trip_after`` in a row, or a probe (a send after a trip) failed."""
        if self.trip_after <= 0:
            return False
        with self._lock:
            probe = self._tripped_at is not None and sent_at >= self._tripped_at
            self._failures += 1
            if probe or self._failures >= self.trip_after:
                self._failures = 0
                self._tripped_at = time.perf_counter()
                return True
            return False


def guard_capacity(settings: Settings) -> int:
    """ZAPI_INSTANCE_CONCURRENCY; by default half the threads when the fleet has several
    instances, and all of them when it has one (nothing to protect, and a full instance's
    deferrals would only add work)."""
    if settings.zapi_instance_concurrency is not None:
        return settings.zapi_instance_concurrency
    if len(settings.instances()) > 1:
        return max(1, settings.worker_concurrency // 2)
    return settings.worker_concurrency


def _guard_for(instance: Instance) -> InstanceGuard:
    settings = get_settings()
    return InstanceGuard(guard_capacity(settings), settings.zapi_breaker_failures)


_guards = PerInstance(_guard_for)


def get_guard(instance: Instance) -> InstanceGuard:
    return _guards.get(instance)
