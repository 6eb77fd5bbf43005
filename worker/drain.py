"""The drain: how a worker stops on SIGTERM, within ``CELERY_WORKER_DRAIN_TIMEOUT``.

SIGTERM is Celery's warm shutdown, which is most of a drain already: the event loop ends, the
task consumer is cancelled, the pool finishes the tasks it runs, their acks go out, the
connection closes. This consumer step adds what a pod's grace period needs:

1. **At once** (:meth:`Drain.begin`, in the main thread as the consumer closes, before the
   pool is joined): the channel fetches no more, and what it fetched but did not claim goes back
   (worker/fetch_channel.py ``stop_fetching``); every job it holds but has not started goes
   back to the head of its queue, ownership-checked, its message as fetched (``eta``,
   retries and our headers kept, so the next worker honours them): those waiting in the
   timer for an ``eta`` or a countdown (a rate slot, an order's turn, a retry's backoff) and
   those reserved but not started (their futures cancelled first, so none starts here after
   all). Celery would give them back only at the channel's close, after the last send.
2. **The bound** (:class:`DrainDeadline`, a thread started by the signal): the sends in
   flight get ``CELERY_WORKER_DRAIN_TIMEOUT`` to finish. What is still unfinished then goes
   back too, and the process exits 0 at once (a thread cannot be stopped, and Python would
   wait for it). Such a job may have reached Z-API: its send was marked in flight under its
   idempotency claim, which outlives this process for the request's deadline. A re-run
   meanwhile is deferred (the claim is busy); a reply this worker records before it exits is
   found and returned, never sent again; after the deadline the send counts as ambiguous
   (``ambiguousAttempts``) and is made again (tasks/state/idempotency.py).

Why not Celery's soft shutdown (``worker_soft_shutdown_timeout``): it belongs to the cold
shutdown (SIGQUIT; SIGTERM only with ``REMAP_SIGTERM`` in the environment, which a bare
``celery -A worker worker`` does not have), it sleeps its whole timeout even once the tasks are
done (celery#9505), it then cancels tasks through the pool's ``terminate_job``, which the
threads pool does not have (celery#10490), and it exits 1. It stays off.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import bootsteps
from celery.signals import worker_shutting_down
from celery.worker import state as worker_state

from config import get_settings
from worker import heartbeat
from worker.fetch_wake import shutting_down
from worker.tracing_setup import flush_tracing

logger = logging.getLogger("zapi_queue.drain")

#: Seconds beyond CELERY_WORKER_DRAIN_TIMEOUT within which a stopping worker has exited, as
#: docs/operations.md promises (its consumer's stop, the process's end, a loaded host): a grace
#: period (compose's ``stop_grace_period``, a pod's) must cover both.
EXIT_MARGIN = 5.0
#: Of that margin, the most a stopping worker spends exporting its last spans.
SPANS_FLUSH_SECONDS = 1.0


class Drain(bootsteps.StartStopStep):
    """Consumer step: the drain of a stopping worker (see the module)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timeout = get_settings().celery_worker_drain_timeout
        self.deadline: DrainDeadline | None = None
        self._began = False
        parent.drain = self  # for the consumer's close (worker/consumer.py)
        worker_shutting_down.connect(self._on_shutting_down, weak=False)

    def start(self, c: Any) -> None:
        keep_results(c.pool)

    def _on_shutting_down(self, **_: Any) -> None:
        """In the signal handler: only start the clock, the work is the main thread's."""
        if self.deadline is None:
            self.deadline = DrainDeadline(self.timeout)
            start_from_signal_handler(self.deadline)

    def begin(self, c: Any) -> None:
        """The consumer closes (worker/consumer.py calls this before Celery forgets the jobs it
        had not started): on a shutdown, stop fetching and give back what has not started. A
        consumer restarting after a lost connection keeps its jobs."""
        if self._began or not shutting_down():
            return
        self._began = True
        started = time.monotonic()
        returned = sum(channel.stop_fetching() for channel in channels(c))
        handed = hand_back(not_started())
        logger.info(
            "stopping: fetching stopped, %d job(s) not started and %d fetched given back in "
            "%.2fs; waiting up to %ss for %d running",
            handed,
            returned,
            time.monotonic() - started,
            self.timeout,
            len(worker_state.active_requests),
        )

    def shutdown(self, c: Any) -> None:
        worker_shutting_down.disconnect(self._on_shutting_down)
        if self.deadline is not None:
            self.deadline.cancel()


class DrainDeadline(threading.Thread):
    """Waits ``timeout`` seconds from the signal; then gives back the jobs still unfinished and
    ends the process with exit code 0 (see the module)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(name="zapi-queue drain deadline", daemon=True)
        self.timeout = timeout
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def run(self) -> None:
        if self._cancelled.wait(self.timeout):
            return
        left = unfinished()
        handed = hand_back(left)
        logger.warning(
            "stopping: %d job(s) still running after %ss given back to the queue; a send "
            "among them may have reached Z-API: it is sent again only after its deadline, "
            "counted as ambiguous. Exiting",
            handed,
            self.timeout,
        )
        exit_now()


def start_from_signal_handler(thread: threading.Thread) -> None:
    """Start ``thread`` from a signal handler. Under gevent the handler runs in the hub, where
    nothing may wait, and ``Thread.start`` waits for the thread to run (``BlockingSwitchOutError``):
    there a greenlet of its own starts it, an instant later."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        sys.modules["gevent"].spawn(thread.start)
    else:
        thread.start()


def exit_now() -> None:
    """The process ends here, exit code 0: no heartbeat left behind, the logs and (briefly)
    the spans flushed."""
    heartbeat.remove(get_settings().heartbeat_path)
    flush_tracing(SPANS_FLUSH_SECONDS)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def keep_results(pool: Any) -> None:
    """Keep each task's pool result alive until its task ends, so that a request's weak
    reference to it (``_apply_result``) finds its future, which :func:`never_to_start`
    cancels. The threads pool's results are otherwise dropped at once."""
    apply = getattr(pool, "on_apply", None)
    if apply is None or getattr(apply, "keeps_results", False):
        return
    running: set[Any] = set()

    def on_apply(*args: Any, **kwargs: Any) -> Any:
        result = apply(*args, **kwargs)
        future = getattr(result, "f", None)
        if future is not None:
            running.add(result)
            future.add_done_callback(lambda _: running.discard(result))
        return result

    on_apply.keeps_results = True  # type: ignore[attr-defined]
    pool.on_apply = on_apply


def never_to_start(request: Any) -> bool:
    """True when the request has not started and now never will in this process: it waits
    in the timer or a bucket (the stopped event loop applies nothing more), or its future was
    still queued and is now cancelled."""
    if request in worker_state.active_requests:
        return False
    entry = getattr(request, "_eta_timer_entry", None)
    if entry is not None:
        entry.cancel()  # the loop has stopped; this is only for certain
    ref = request._apply_result
    if ref is None:
        return True  # not handed to the pool
    result = ref()
    future = getattr(result, "f", None)
    return future is not None and bool(future.cancel())


def not_started() -> list[Any]:
    """The requests held that will not start here."""
    return [request for request in held() if never_to_start(request)]


def unfinished() -> list[Any]:
    """Every request this worker still holds, running or not."""
    return held()


def held() -> list[Any]:
    """The requests scheduled (an ``eta``), reserved or running, not yet done (copied: task
    threads change the sets)."""
    while True:
        try:
            return list(
                set(getattr(worker_state, "scheduled_requests", ()))  # 5.7's; not in the stubs
                | set(worker_state.reserved_requests)
                | set(worker_state.active_requests)
            )
        except RuntimeError:  # changed size during the copy
            continue


def hand_back(requests: Iterable[Any]) -> int:
    """Give the requests' messages back to the head of their queues, by channel."""
    by_channel: dict[Any, list[str]] = {}
    for request in requests:
        message = request.message
        channel = getattr(message, "channel", None)
        if channel is None or not hasattr(channel, "hand_back") or message.acknowledged:
            continue
        by_channel.setdefault(channel, []).append(str(message.delivery_tag))
    for channel, tags in by_channel.items():
        channel.hand_back(tags)
    return sum(len(tags) for tags in by_channel.values())


def channels(c: Any) -> list[Any]:
    """The consumer's task channel, if it is ours (it can stop fetching)."""
    channel = getattr(getattr(c, "task_consumer", None), "channel", None)
    return [channel] if hasattr(channel, "stop_fetching") else []
