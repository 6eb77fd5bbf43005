"""The worker-side view of an order update job, with the recipient's phone masked.

Whatever a producer put in ``argsrepr`` (Celery's default is the full body), the worker
replaces it before it is used: task events (and so Flower), ``inspect active`` and the task's
own context show ``[{'phone': '55119*****678', 'messageId': ..., ...}]``. The body itself is
untouched: the task still receives and sends the real number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.worker.request import Request

from tasks.contract.redaction import describe_body

if TYPE_CHECKING:  # the stubs' name for what info() returns; not in celery itself
    from celery.worker.request import _InfoDict as InfoDict


class OrderUpdateRequest(Request):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        job_args = self.args
        self._masked_args = describe_body(job_args[0] if job_args else None)
        self.request_dict["argsrepr"] = self._masked_args

    @property
    def argsrepr(self) -> str:
        return self._masked_args

    def info(self, safe: bool = False) -> InfoDict:
        """``inspect active`` and friends: always the masked form."""
        info = super().info(safe=True)
        info["args"] = self._masked_args
        return info
