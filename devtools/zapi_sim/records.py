"""What the fake Z-API received: every request, kept for the tests to read back.

Status polls and calls to the instance's queue (``POST .../queue``, ``DELETE .../queue...``)
are kept apart from the sends, so that a test counting a message's sends, or what reached an
instance, does not count the worker's health checks and queue reconciliations too.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int = 0

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def message_id(self) -> str | None:
        data = self.json
        return data.get("messageId") if isinstance(data, dict) else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", errors="replace")
        return data


class Received:
    """The requests received so far, from the server's threads, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._status_polls: list[ReceivedRequest] = []
        self._queue_calls: list[ReceivedRequest] = []

    def add(
        self, request: ReceivedRequest, *, status_poll: bool = False, queue_call: bool = False
    ) -> None:
        with self._lock:
            if status_poll:
                self._status_polls.append(request)
            elif queue_call:
                self._queue_calls.append(request)
            else:
                self._requests.append(request)

    def requests(self, message_id: str | None = None) -> list[ReceivedRequest]:
        """What was received so far, optionally only requests for one ``messageId``."""
        with self._lock:
            found = list(self._requests)
        if message_id is None:
            return found
        return [r for r in found if r.message_id == message_id]

    def status_polls(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._status_polls)

    def queue_calls(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._queue_calls)

    def stats(self) -> dict[str, Any]:
        """Counts and times of the requests, for a benchmark that must not fetch them all."""
        received = self.requests()
        times = [r.received_at for r in received]
        return {
            "received": len(received),
            "accepted": sum(1 for r in received if r.status == 200),
            "distinct": len({r.message_id for r in received if r.status == 200}),
            "first": min(times, default=None),
            "last": max(times, default=None),
        }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._status_polls.clear()
            self._queue_calls.clear()
