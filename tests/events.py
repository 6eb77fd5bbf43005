"""Task events as Flower receives them, for tests that look at what the worker reports."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery


class EventCapture:
    """Every task event from the broker, received in a thread, as Flower receives them."""

    def __init__(self, app: Celery) -> None:
        self.seen: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._connection = app.connection_for_read()
        self._receiver = app.events.Receiver(self._connection, handlers={"*": self.seen.append})
        self._receiver.on_consume_ready = lambda *args, **kw: self._ready.set()
        self._thread = threading.Thread(target=self._receiver.capture, daemon=True)

    def __enter__(self) -> EventCapture:
        self._thread.start()
        assert self._ready.wait(10), "event receiver did not start"
        # Subscribed for real once an event arrives (workers send a heartbeat every 2 s);
        # before that, a task's first events could be published to nobody.
        deadline = time.monotonic() + 10
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.seen, "no event received: is the worker sending events?"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=5)
        self._connection.release()

    def wait_for(self, job_id: str, kind: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("type") == kind and e.get("uuid") == job_id for e in self.seen):
                return
            time.sleep(0.05)
