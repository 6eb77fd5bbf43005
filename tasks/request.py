"""The worker-side view of an order update job, with the recipient's phone masked.

Whatever a producer put in ``argsrepr`` (Celery's default is the full body), the worker
replaces it before it is used: task events (and so Flower), ``inspect active`` and the task's
own context show ``[{'phone': '55119*****678', 'messageId': ..., ...}]``. The body itself is
untouched: the task still receives and sends the real number. Its kwargs are shown with the
instance alias it goes through, ``default`` included when the producer named none.

A job answered from an idempotency record ends SUCCESS with the stored reply; right after its
success event the worker sends one more, ``task-deduplicated``, whose ``result`` appends "not
sent: already delivered by job X at T". Flower merges an event that arrives after SUCCESS into
the task without changing its state, so its Result shows the note.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from celery.utils.saferepr import saferepr
from celery.worker.request import Request

from config.instances import DEFAULT_ALIAS
from tasks.contract.redaction import describe_body

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


class OrderUpdateRequest(Request):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        job_args = self.args
        self._masked_args = describe_body(job_args[0] if job_args else None)
        self.request_dict["argsrepr"] = self._masked_args
        kwargs = self.kwargs if isinstance(self.kwargs, dict) else {}
        self._shown_kwargs = saferepr({"instance": DEFAULT_ALIAS, **kwargs})
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

    def send_event(self, type: str, **fields: Any) -> None:
        # Celery's worker makes a subclass whose on_success does not call ours: the success
        # event is the one place every path goes through.
        super().send_event(type, **fields)
        if type != "task-succeeded":
            return
        with _lock:
            note = _REPEATS.pop(self.id, None)
        if note is not None:
            super().send_event("task-deduplicated", result=f"{fields.get('result')}  [{note}]")
