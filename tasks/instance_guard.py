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
  for the pause without using attempts, and the first send after it probes: a success closes
  the breaker, a failure trips it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from config import Settings, get_settings
from config.instances import Instance
from tasks.per_process import PerInstance


@dataclass
class InstanceGuard:
    """One instance's in-flight permits and consecutive-failure count in this process."""

    capacity: int
    trip_after: int
    _permits: threading.BoundedSemaphore = field(init=False)
    _failures: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._permits = threading.BoundedSemaphore(self.capacity)

    def try_enter(self) -> bool:
        """Take an in-flight permit if one is free (never blocks)."""
        return self._permits.acquire(blocking=False)

    def leave(self) -> None:
        self._permits.release()

    def succeeded(self) -> None:
        """Z-API answered (a success or a refusal): the instance is reachable."""
        with self._lock:
            self._failures = 0

    def failed(self) -> bool:
        """A transient failure; True when it completes ``trip_after`` in a row (trip now)."""
        if self.trip_after <= 0:
            return False
        with self._lock:
            self._failures += 1
            if self._failures >= self.trip_after:
                self._failures = 0
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
