"""The consumer's heartbeat: its event loop says, about once a second, that it is making progress.

``zapi-queue probe live`` must catch a worker alive but not consuming (celery#8030, #10302): a
process frozen, a loop blocked on a Redis that stopped answering. So the beat is written by a
timer of the consumer's own event loop, the hub Celery 5.7's ``asynloop`` runs for the threads
pool over Redis: when the loop stops turning (a synchronous Redis call waiting out its
``socket_timeout``, a consumer stuck reconnecting, a SIGSTOP), no beat is written. A loop that
turns while its fetch waits for a reply that is not coming (a server that stopped answering
keeps its sockets open: the loop just polls) is no progress either: past ``brpop_timeout`` (the
server's own bound on a blocking fetch) and :data:`FETCH_REPLY_GRACE`, with no reply waiting to
be read, the beat keeps its last progress and says it is not fetching. A worker whose prefetch
slots are all taken has a reply waiting (readable) or no fetch in flight: it is busy, not stuck.

Readiness (``probe ready``) is the consumer connected with a fetch going, and no shutdown begun:
a SIGTERM marks the file at once (``worker_shutting_down``), a consumer stop or restart marks
it not connected, and the worker's end removes it.

With no hub (the gevent pool: Celery's ``synloop`` repeats ``drain_events`` itself) the pool's
timer, a greenlet, writes the beats, and progress is the loop's own: the poller notes each
turn (worker/fetch_wake.py), and a loop that has not turned within :data:`LOOP_TURN_GRACE`
makes none. A process blocked outside gevent (a C call holding the only thread, a SIGSTOP)
runs no greenlet at all, so no beat is written, as with the hub.
"""

from __future__ import annotations

import logging
import os
import select
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.signals import worker_shutting_down

from config import get_settings
from worker import heartbeat
from worker.fetch_wake import shutting_down
from worker.heartbeat import Beat, HeartbeatError

logger = logging.getLogger("zapi_queue.heartbeat")

#: Seconds between beats: often enough for any timeout a probe takes, a write a second at most.
BEAT_INTERVAL = 1.0
#: A fetch is stuck once its reply is this much later than ``brpop_timeout`` (1 s) promised.
FETCH_REPLY_GRACE = 2.0
#: With no hub: seconds a loop turn may take, past the 2 s a ``drain_events`` of Celery's
#: ``synloop`` waits at most, before the loop counts as stalled.
LOOP_TURN_GRACE = 5.0


class ConsumerHeartbeat(bootsteps.StartStopStep):
    """Consumer step: a beat per :data:`BEAT_INTERVAL` from the event loop (see the module)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path: Path = get_settings().heartbeat_path
        self.started = time.monotonic()
        self.progress = self.started
        self.stopping = False
        self._timer: Any = None
        self._failing = False
        # The worker starts now: alive (its start-up grace), not ready.
        self._write(connected=False, fetching=False)
        worker_shutting_down.connect(self._on_shutting_down, weak=False)

    def register_with_event_loop(self, c: Any, hub: Any) -> None:
        """Called as each event loop starts (again after a reconnect): the loop's own timer."""
        self._cancel_timer()
        self._timer = hub.call_repeatedly(BEAT_INTERVAL, self.beat, c)

    def start(self, c: Any) -> None:
        """With no hub, the pool's timer beats instead (the module says how progress is read)."""
        if c.hub is not None:
            return
        self._cancel_timer()
        if c.timer is None:
            logger.warning("no event loop and no timer in this worker: no heartbeat")
            return
        self._timer = c.timer.call_repeatedly(BEAT_INTERVAL, self.beat, (c,))

    def beat(self, c: Any) -> None:
        """One turn of the loop: progress, unless the fetch waits for a reply long overdue (or,
        with no hub, the loop has not turned for too long)."""
        now = time.monotonic()
        stuck = fetch_overdue(c, now) or (c.hub is None and loop_stalled(c, now))
        if not stuck:
            self.progress = now
        running = c.blueprint.state == bootsteps.RUN  # type: ignore[attr-defined] # no stub
        connected = c.connection is not None and running
        fetching = connected and not stuck and consuming(c) and not shutting_down()
        self._write(connected=connected, fetching=fetching)

    def stop(self, c: Any) -> None:
        """A consumer stopping (a shutdown, or a restart after a lost connection): no more
        beats from this loop, and not ready; the last progress stays."""
        self._cancel_timer()
        self._write(connected=False, fetching=False)

    def shutdown(self, c: Any) -> None:
        """The worker's end: no heartbeat left behind to be judged."""
        self._cancel_timer()
        worker_shutting_down.disconnect(self._on_shutting_down)
        heartbeat.remove(self.path)

    def _on_shutting_down(self, **_: Any) -> None:
        """SIGTERM (or SIGINT, SIGQUIT): not ready from this moment, before any drain."""
        self.stopping = True
        self._write(connected=False, fetching=False)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _write(self, *, connected: bool, fetching: bool) -> None:
        beat = Beat(
            progress=self.progress,
            started=self.started,
            pid=os.getpid(),
            connected=connected and not self.stopping,
            fetching=fetching and not self.stopping,
            stopping=self.stopping,
        )
        try:
            heartbeat.write(self.path, beat)
        except HeartbeatError as exc:
            if not self._failing:  # once per episode: the probe will say it too
                logger.error("%s; the liveness probe will fail", exc)  # noqa: TRY400
            self._failing = True
            return
        if self._failing:
            logger.warning("heartbeat written again to %s", self.path)
        self._failing = False


def consuming(c: Any) -> bool:
    """The consumer has its task consumer on at least one queue (not cancelled away)."""
    task_consumer = getattr(c, "task_consumer", None)
    return task_consumer is not None and bool(task_consumer.queues)


def fetch_overdue(c: Any, now: float) -> bool:
    """The consumer's fetch (kombu's Redis channel: BRPOP, or our BLMOVE) was sent more than
    ``brpop_timeout`` + :data:`FETCH_REPLY_GRACE` ago and no reply is waiting to be read."""
    channel = getattr(getattr(c, "task_consumer", None), "channel", None)
    connection = getattr(channel, "_in_poll", None)
    sent_at = getattr(channel, "_brpop_sent_at", None)
    if not connection or not isinstance(sent_at, float):
        return False
    if now - sent_at <= (getattr(channel, "brpop_timeout", 1) or 1) + FETCH_REPLY_GRACE:
        return False
    sock = getattr(connection, "_sock", None)
    return sock is not None and not readable(sock)


def loop_stalled(c: Any, now: float) -> bool:
    """With no hub: the consumer's poller has not started a turn for :data:`LOOP_TURN_GRACE`
    seconds (a poller that does not note its turns is never judged)."""
    transport = getattr(getattr(c, "connection", None), "transport", None)
    turned_at = getattr(getattr(transport, "cycle", None), "turned_at", None)
    return isinstance(turned_at, float) and now - turned_at > LOOP_TURN_GRACE


def readable(sock: Any) -> bool:
    """A reply (or the peer's close) is waiting on ``sock``."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True  # closed under us: the loop will see the error itself
    return bool(ready)
