"""One worker's background threads (the status poller, the Redis watch): started once when the
worker is ready, stopped at its shutdown without holding it up for longer than a timeout."""

from __future__ import annotations

import threading


class BackgroundThread:
    """The start and stop of a daemon thread running :meth:`_run`, which returns once
    ``self._stop`` is set. A daemon, so that a hung look cannot keep a stopping worker alive."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self) -> None:
        """Start the thread, unless it was started already."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError
