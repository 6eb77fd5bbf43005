"""Wake the consumer's poll when a job ends and frees a prefetch slot, without an event loop.

With no event loop (Celery's gevent pool runs ``synloop``), the consumer repeats
``drain_events(timeout=2.0)``: kombu's poller sends a fetch only while a prefetch slot is free,
then waits on the sockets it knows. When every slot is busy, no fetch is sent, and the ack that
frees a slot changes memory only: nothing the poll waits on becomes readable, so the consumer
sleeps out the full timeout while jobs are queued. At 0 ms of Z-API latency a batch of jobs
ends in a few milliseconds and the worker then idles up to 2 s (issue #34). Kombu's event loop
never has the gap: each of its turns looks at the slots again.

:class:`WakingPoller` adds a pipe to the poll. A poll that starts with some channel out of
slots marks itself *starved*; the ack or reject that frees a slot then writes one byte, the poll
returns, and the next turn fetches. Only a starved poll is woken, so an ack costs a ``write``
only at the moment it matters. With an event loop (the threads pool) the loop's own poller
replaces this one and :meth:`WakingPoller.get` is never called: nothing is marked, nothing is
written.

A shutdown asked meanwhile ends the poll too. Celery's ``synloop`` looks for one only between
two ``drain_events``, and kombu's repeats polls (and fetches, as slots free) for up to 2 s
within one: a SIGTERMed worker would start jobs fetched after the signal. A poll that finds a
shutdown asked ends that ``drain_events`` at once, as its timeout would (the task connection's
polls only: the green pidbox polls its own until it is stopped).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from celery.worker import state as worker_state
from kombu.transport.redis import MultiChannelPoller
from kombu.utils.eventio import READ

#: Seconds a poll asked for after a shutdown waits before it ends.
SHUTDOWN_PAUSE = 0.01


class WakingPoller(MultiChannelPoller):
    """Kombu's Redis poller, with a wake-up pipe for a poll that waits for a free slot."""

    def __init__(self) -> None:
        super().__init__()
        #: (read end, write end) of the wake-up pipe, made by the first starved poll.
        self._wake_pipe: tuple[int, int] | None = None
        #: A poll is in progress that no fetch of a channel out of slots can end.
        self._starved = False
        #: When the consumer's loop last started a poll (``time.monotonic()``): with no event
        #: loop, the heartbeat's proof that the loop turns (worker/consumer_heartbeat.py).
        self.turned_at = time.monotonic()

    def get(self, callback: Any, timeout: float | None = None) -> Any:
        self.turned_at = time.monotonic()
        fetching = [c for c in self._channels if c.active_queues]  # type: ignore[attr-defined]
        if fetching and shutting_down():
            # Synloop's cue to look for the shutdown. Only a task connection's poll: the green
            # pidbox loops on its own connection until told to stop. The pause yields to the
            # other greenlets, should anything else poll this connection in a loop.
            time.sleep(SHUTDOWN_PAUSE)
            raise TimeoutError("a shutdown was asked")
        if any(not c.qos.can_consume() for c in fetching):
            self._arm()
        try:
            return super().get(callback, timeout=timeout)
        finally:
            self._starved = False

    def wake(self) -> None:
        """A prefetch slot was freed: end a starved poll (called by the QoS on ack and
        reject, from any thread or greenlet)."""
        if not self._starved or self._wake_pipe is None:
            return
        self._starved = False
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake is pending anyway
            os.write(self._wake_pipe[1], b"\0")

    def handle_event(self, fileno: int, event: int) -> Any:
        if self._wake_pipe is not None and fileno == self._wake_pipe[0]:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(fileno, 4096)
            return None  # nothing delivered: the poll ends empty, the next one fetches
        return super().handle_event(fileno, event)

    def close(self) -> None:
        super().close()
        pipe, self._wake_pipe = self._wake_pipe, None
        if pipe is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(pipe[0])
            for fd in pipe:
                os.close(fd)

    def _arm(self) -> None:
        if self._wake_pipe is None:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.set_blocking(write_end, False)
            self._wake_pipe = read_end, write_end
            self.poller.register(read_end, READ)
        self._starved = True


def shutting_down() -> bool:
    """A shutdown was asked (Celery's signal handlers set these before anything else). Each
    flag holds the exit code once set, 0 after a SIGTERM: set means neither None nor False,
    as Celery's own ``maybe_shutdown`` reads them."""
    flags = (worker_state.should_stop, worker_state.should_terminate)
    return any(flag is not None and flag is not False for flag in flags)
