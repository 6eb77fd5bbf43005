"""The fake Z-API's behaviour switches: scripted faults, outages, connection, 429s, random draws.

Tests turn them to make the fake misbehave the ways Z-API does; the routes read them
(routes/common.py applies them to a send in Z-API's order). One lock guards them all, and one
seeded random source makes every draw (errors, jitter, failed deliveries) repeatable.
"""

from __future__ import annotations

import collections
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

#: What Z-API's ``GET /status`` says of an instance that is not connected (FACTS.md).
NOT_CONNECTED = "You are not connected."


@dataclass
class Fault:
    """One scripted misbehaviour, used for the next request carrying its ``messageId``."""

    status: int = 503
    body: Any = field(default_factory=lambda: {"error": "Service Unavailable"})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (beyond the client's timeout: a timeout)."""
    drop: bool = False
    """Close the connection without answering."""


class Switches:
    """The switches' state, shared by the server's threads and the test that turns them."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._scripts: dict[str, collections.deque[Fault]] = {}
        self._outage: Fault | None = None
        self._instance_outages: dict[str, Fault] = {}
        self._disconnected: dict[str, str] = {}
        self._recent_by_instance: dict[str, collections.deque[float]] = {}

    def script(self, message_id: str, *faults: Fault) -> None:
        """The next requests whose body has this ``messageId`` get these faults, in order."""
        with self._lock:
            self._scripts.setdefault(message_id, collections.deque()).extend(faults)

    def set_outage(self, fault: Fault | None, instance_id: str | None = None) -> None:
        """Answer every valid request (of ``instance_id`` only, if given) with ``fault`` until
        called again with None."""
        with self._lock:
            if instance_id is None:
                self._outage = fault
            elif fault is None:
                self._instance_outages.pop(instance_id, None)
            else:
                self._instance_outages[instance_id] = fault

    def set_connected(self, instance_id: str, connected: bool, error: str = NOT_CONNECTED) -> None:
        """What ``GET .../status`` says of ``instance_id`` from now on."""
        with self._lock:
            if connected:
                self._disconnected.pop(instance_id, None)
            else:
                self._disconnected[instance_id] = error

    def connection(self, instance_id: str) -> tuple[Fault | None, str | None]:
        """The instance's outage, if any, and its disconnection error, if any."""
        with self._lock:
            fault = self._instance_outages.get(instance_id, self._outage)
            return fault, self._disconnected.get(instance_id)

    def next_fault(self, message_id: str | None, instance_id: str) -> Fault | None:
        """The message's next scripted fault, else the instance's outage, else the global one."""
        with self._lock:
            queue = self._scripts.get(message_id or "")
            if queue:
                return queue.popleft()
            return self._instance_outages.get(instance_id, self._outage)

    def over_rate(self, now: float, instance_id: str, limit: float | None, burst: int) -> bool:
        """Above the instance's 429 threshold (each instance has its own sliding second)."""
        if limit is None:
            return False
        with self._lock:
            recent = self._recent_by_instance.setdefault(instance_id, collections.deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= math.floor(limit) + burst:
                return True
            recent.append(now)
            return False

    def draw_send(self, error_rate: float, jitter: float) -> tuple[bool, float]:
        """Whether a send fails (an ``error_rate`` share) and its extra delay (up to ``jitter``)."""
        with self._lock:
            return self._random.random() < error_rate, self._random.uniform(0, jitter)

    def draw_failure(self, share: float, kinds: int) -> int | None:
        """For a ``share`` of the calls, which of ``kinds`` failures happens; None for the rest."""
        with self._lock:
            failing = self._random.random() < share
            return self._random.randrange(kinds) if failing else None

    def reset(self) -> None:
        """Every switch back to normal (the random source goes on: a run stays repeatable)."""
        with self._lock:
            self._disconnected.clear()
            self._scripts.clear()
            self._outage = None
            self._instance_outages.clear()
            self._recent_by_instance.clear()
