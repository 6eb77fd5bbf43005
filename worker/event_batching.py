"""Task events published in batches, a few per second, instead of one publish per event.

Celery buffers a worker's task events (received, started, succeeded...) and asks its event loop
to publish the buffer "soon": from a task thread that wakes the loop (a pipe write and a poll
return) for a ``PUBLISH`` carrying one or two events. Each job paid about two publishes and two
wake-ups, a fifth of its Redis round trips (issue #18).

This consumer step makes the dispatcher ask for a flush ``EVENT_FLUSH_DELAY`` seconds later
instead, once per batch: the events of every job that ends meanwhile leave in one ``PUBLISH``
(Celery's own ``task.multi`` message, which Flower reads like any other), and nothing wakes the
loop for them. Flower shows a job's state up to the delay later while the worker is busy; while
it is idle, up to the loop's next turn (at most ``brpop_timeout``, 1 s). Every event is still
sent, in order. Events buffered when the consumer stops are published then.

With no event loop (the gevent pool) Celery buffers nothing and publishes every event on its
own, from the task's greenlet. There this step turns the buffer on for task events and flushes
it from the pool's timer, a greenlet, on the same delay.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from celery import bootsteps

#: Seconds between a batch's first event and its publish.
EVENT_FLUSH_DELAY = 0.1


class BatchedEvents(bootsteps.StartStopStep):
    """Consumer step: publish buffered task events once per ``EVENT_FLUSH_DELAY``."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._lock = threading.Lock()
        self._scheduled = False

    def start(self, c: Any) -> None:
        """Runs after Celery's Events step made the (new) dispatcher: reroute its flushes."""
        dispatcher = c.event_dispatcher
        with self._lock:
            self._scheduled = False  # a timer of the previous connection died with it
        if dispatcher is None or not dispatcher.enabled:
            return
        if c.hub is not None:
            if dispatcher.on_send_buffered is None:
                return  # Celery's dispatcher does not buffer: nothing to batch
            call_later = c.hub.call_later
        elif c.timer is not None:
            # No event loop (the gevent pool): Celery would publish each event on its own
            # ("XXX This excludes eventlet/gevent, which should actually buffer"). Buffer the
            # task events here, flushed by the pool's timer (a greenlet) instead of the hub.
            dispatcher.buffer_group = frozenset({"task"})
            call_later = c.timer.call_after
        else:
            return

        def flush() -> None:
            with self._lock:
                self._scheduled = False
            c._flush_events()  # the dispatcher in place now

        def on_send_buffered() -> None:
            with self._lock:
                if self._scheduled:
                    return
                self._scheduled = True
            call_later(EVENT_FLUSH_DELAY, flush)

        dispatcher.on_send_buffered = on_send_buffered

    def stop(self, c: Any) -> None:
        """Publish what is buffered before Celery's Events step closes the dispatcher."""
        dispatcher = c.event_dispatcher
        if dispatcher is not None:
            # A stop must finish; what a broken connection refuses stays in the dispatcher's
            # buffer, which Celery's Events step publishes on the next connection.
            with contextlib.suppress(Exception):
                dispatcher.flush()

    shutdown = stop  # a worker's shutdown calls steps' shutdown, a consumer restart their stop
