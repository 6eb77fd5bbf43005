"""The worker-side view of an order update job, with the recipient's phone masked.

Whatever a producer put in ``argsrepr``/``kwargsrepr`` (Celery's default is the full body),
the worker replaces both before they are used: task events (and so Flower), ``inspect
active/reserved/scheduled`` and the task's own context show ``[{'phone': '55119*****678',
'orderRequestId': ..., 'orderStatus': ...}]``, whatever the call's shape (the body in
``kwargs["body"]``, extra positional arguments, unknown kwargs: their names only). A retry is
republished with the same masked forms (:class:`OrderUpdateTask`), so its ``task-sent`` event
shows no phone either. The body itself is untouched: the task still receives and sends the real
number. The kwargs show the instance alias the job goes through, ``default`` included when the
producer named none.

A wait (a rate slot, the order's turn, its webhook, Redis) is a Celery retry; its
``task-retried`` event and its stored RETRY state read as a wait, without a traceback.

A job answered from an idempotency record ends SUCCESS with the stored reply; right after its
success event the worker sends one more, ``task-deduplicated``, whose ``result`` appends "not
sent: already delivered by job X at T". Flower merges an event that arrives after SUCCESS into
the task without changing its state, so its Result shows the note.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Retry
from celery.worker.request import Request

from config.instances import DEFAULT_ALIAS
from tasks.contract.redaction import mask_digit_runs, shown_text, summarize_body

if TYPE_CHECKING:  # the stubs' name for what info() returns; not in celery itself
    from celery.worker.request import _InfoDict as InfoDict


#: Repeats noted by executions in this process and not yet reported (threads pool: the
#: execution and its Request share the process). Capped: an entry whose job ended otherwise
#: (a Redis error after the note) is dropped with the oldest.
_REPEATS: OrderedDict[str, str] = OrderedDict()
_REPEATS_CAP = 10_000
_lock = threading.Lock()


def note_repeat(job_id: str, note: str) -> None:
    """Tell this job's Request that it ended without a send, and why."""
    with _lock:
        _REPEATS[job_id] = note
        while len(_REPEATS) > _REPEATS_CAP:
            _REPEATS.popitem(last=False)


#: Positional arguments and unknown kwargs shown by name, at most (a call may carry thousands).
_SHOWN_EXTRAS = 3
#: Known kwargs: how each is shown. Anything of another type shows its type's name.
_KNOWN_KWARGS = ("instance", "sequence", "force", "idempotency_key", "order_key")


def shown_args(args: Any) -> str:
    """A job's positional arguments, each body summarized with its phone masked."""
    if not isinstance(args, list | tuple):
        return f"<{type(args).__name__}>"
    shown = [summarize_body(body) for body in args[:_SHOWN_EXTRAS]]
    if len(args) > _SHOWN_EXTRAS:
        shown.append(f"<{len(args) - _SHOWN_EXTRAS} more>")
    return "[" + ", ".join(shown) + "]"


def _shown_kwarg(name: str, value: Any) -> str:
    if name == "sequence" and isinstance(value, int) and not isinstance(value, bool):
        return repr(value)
    if name == "force" and isinstance(value, bool):
        return repr(value)
    return repr(shown_text(value))


def shown_kwargs(kwargs: Any) -> str:
    """A job's kwargs: the instance alias (``default`` when none is named), the known kwargs, a
    body given as ``kwargs["body"]`` summarized, and only the names of unknown ones."""
    if not isinstance(kwargs, dict):
        return f"<{type(kwargs).__name__}>"
    parts = [f"'instance': {_shown_kwarg('instance', kwargs.get('instance', DEFAULT_ALIAS))}"]
    parts += [
        f"{name!r}: {_shown_kwarg(name, kwargs[name])}"
        for name in _KNOWN_KWARGS[1:]
        if name in kwargs
    ]
    if "body" in kwargs:
        parts.append(f"'body': {summarize_body(kwargs['body'])}")
    unknown = [name for name in kwargs if name not in _KNOWN_KWARGS and name != "body"]
    parts += [
        f"{shown_text(name, 40)!r}: <{type(kwargs[name]).__name__}>"
        for name in unknown[:_SHOWN_EXTRAS]
    ]
    if len(unknown) > _SHOWN_EXTRAS:
        parts.append(f"'<{len(unknown) - _SHOWN_EXTRAS} more>': ...")
    return "{" + ", ".join(parts) + "}"


#: What each wait waits for, by the class name of its exception (tasks/execution/outcomes.py).
_WAITS_FOR = {
    "RateLimitWait": "a rate slot",
    "OrderWait": "its order's turn",
    "UnknownOrderWait": "its order's webhook",
    "StateUnavailableWait": "Redis",
}


def is_wait(exc: Any) -> bool:
    """Whether ``exc`` re-schedules a job for a wait (no attempt used), not for a failure."""
    # On use: the execution imports this module (note_repeat).
    from tasks.execution.outcomes import DEFERRAL_REASONS

    return isinstance(exc, tuple(DEFERRAL_REASONS))


def is_stored_wait(result: Any) -> bool:
    """Whether ``result``, an exception as the result backend encodes it, is a wait's."""
    return isinstance(result, dict) and result.get("exc_type") in _WAITS_FOR


def wait_text(exc: Any, when: Any = None) -> str | None:
    """How a wait reads in Flower (``waiting for a rate slot: ...; runs again in 0.8 s``), or
    None when ``exc`` is not a wait."""
    if not is_wait(exc):
        return None
    text = f"waiting for {_WAITS_FOR.get(type(exc).__name__, 'its turn')}: {exc}"
    if isinstance(when, int | float):
        text += f"; runs again in {when:.1f} s"
    return f"{text} ({type(exc).__name__})"


class OrderUpdateTask(Task):  # type: ignore[type-arg]
    """The tasks' base: a retry is republished with masked ``argsrepr``/``kwargsrepr``.

    Celery's ``Task.retry`` builds the new message from the request without them, so
    ``amqp.as_task_v2`` would fill them with the full body, and the worker's ``task-sent``
    event (what Flower shows until the retry is received) would carry the phone."""

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Any = None,
        throw: bool = True,
        eta: Any = None,
        countdown: Any = None,
        max_retries: Any = None,
        **options: Any,
    ) -> Any:
        request = self.request
        options["argsrepr"] = shown_args(request.args if args is None else args)
        options["kwargsrepr"] = shown_kwargs(request.kwargs if kwargs is None else kwargs)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)


class OrderUpdateRequest(Request):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._masked_args = shown_args(self.args)
        self.request_dict["argsrepr"] = self._masked_args
        self._shown_kwargs = shown_kwargs(self.kwargs)
        self.request_dict["kwargsrepr"] = self._shown_kwargs

    @property
    def argsrepr(self) -> str:
        return self._masked_args

    @property
    def kwargsrepr(self) -> str:
        return self._shown_kwargs

    def info(self, safe: bool = False) -> InfoDict:
        """``inspect active`` and friends: always the masked form."""
        info = super().info(safe=True)
        info["args"] = self._masked_args
        info["kwargs"] = self._shown_kwargs
        return info

    def on_retry(self, exc_info: Any) -> None:
        """A wait's ``task-retried`` event says what it waits for, without a traceback."""
        retry = exc_info.exception
        if not isinstance(retry, Retry):  # the pool's ExceptionWithTraceback around it
            retry = getattr(retry, "exc", None)
        shown = wait_text(getattr(retry, "exc", None), getattr(retry, "when", None))
        if shown is None:
            super().on_retry(exc_info)
            return
        if self.task.acks_late:
            self.acknowledge()
        self.send_event("task-retried", exception=shown, traceback=None)

    def send_event(self, type: str, **fields: Any) -> None:
        # An error may quote what the producer sent (an unknown instance alias, a key): any
        # phone-like run of digits in it is masked before Flower shows it.
        for name in ("exception", "traceback"):
            if isinstance(fields.get(name), str):
                fields[name] = mask_digit_runs(fields[name])
        # Celery's worker makes a subclass whose on_success does not call ours: the success
        # event is the one place every path goes through.
        super().send_event(type, **fields)
        if type != "task-succeeded":
            return
        with _lock:
            note = _REPEATS.pop(self.id, None)
        if note is not None:
            super().send_event("task-deduplicated", result=f"{fields.get('result')}  [{note}]")
