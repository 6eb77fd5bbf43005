"""The two Celery tasks of the public contract, and the delivery they share.

Producers call them by name: ``send_task("zapi.order_status_update", args=[body])``, optionally
with ``kwargs``: ``idempotency_key`` (a repeat with the same key is not sent again),
``sequence`` (the update's position among its order's updates, e.g. the shop's order version)
and ``force`` (send it even if it would move its order backward). What one execution does is
in :mod:`tasks.delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Task, shared_task

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import AttemptsExhaustedError, InvalidBodyError, PermanentError
from tasks.delivery import deliver

ORDER_STATUS_UPDATE = Endpoint.ORDER_STATUS_UPDATE.task_name
ORDER_PAYMENT_UPDATE = Endpoint.ORDER_PAYMENT_UPDATE.task_name

# Expected failures: Celery logs them in one line instead of a traceback.
_EXPECTED = (PermanentError, AttemptsExhaustedError)

# Celery's retry limit counts deferrals for a rate slot too; ZAPI_MAX_ATTEMPTS bounds the sends
# (tasks.delivery), so Celery's own limit is off. Passing max_retries=None to retry() would not
# do: there None means "the task's default", which is 3.
_OPTIONS: dict[str, Any] = {
    "bind": True,
    "throws": _EXPECTED,
    "max_retries": None,
    # Masks the phone in what the worker reports (events, Flower, inspect).
    "Request": "tasks.request:OrderUpdateRequest",
}


#: The keyword arguments a producer may pass, besides the body.
OPTIONAL_KWARGS = ("idempotency_key", "sequence", "force", "instance")


@dataclass(frozen=True, slots=True)
class Call:
    """A job's arguments, checked: one body, and only the known keyword arguments."""

    body: Any
    idempotency_key: Any = None
    sequence: Any = None
    force: Any = False
    instance: Any = None

    @classmethod
    def of(cls, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        """The call, or InvalidBodyError saying what the task expects: Celery would otherwise
        fail a wrong shape with a bare TypeError (no body) or a misleading message (a second
        positional body taken for the idempotency key)."""
        expects = (
            f"{task_name} takes one positional argument, the body (Z-API's JSON body, or the "
            f"two-field form), and optionally the kwargs {', '.join(OPTIONAL_KWARGS)}"
        )
        unknown = sorted(set(kwargs) - set(OPTIONAL_KWARGS) - {"body"})
        if unknown:
            raise InvalidBodyError(f"{expects}; got unknown kwargs: {', '.join(unknown)}")
        positional = list(args)
        if "body" in kwargs:
            positional.insert(0, kwargs.pop("body"))
        if len(positional) != 1:
            count = len(positional)
            raise InvalidBodyError(
                f"{expects}; got {count} positional argument{'' if count == 1 else 's'}"
            )
        return cls(positional[0], **kwargs)


@shared_task(name=ORDER_STATUS_UPDATE, **_OPTIONS)
def order_status_update(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Send an order status update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return _deliver(self, Endpoint.ORDER_STATUS_UPDATE, Call.of(ORDER_STATUS_UPDATE, args, kwargs))


@shared_task(name=ORDER_PAYMENT_UPDATE, **_OPTIONS)
def order_payment_update(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Send an order payment update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return _deliver(
        self, Endpoint.ORDER_PAYMENT_UPDATE, Call.of(ORDER_PAYMENT_UPDATE, args, kwargs)
    )


def _deliver(task: Task[Any, Any], endpoint: Endpoint, call: Call) -> dict[str, Any]:
    return deliver(
        task,
        endpoint,
        call.body,
        call.idempotency_key,
        sequence=call.sequence,
        force=call.force,
        instance=call.instance,
    )
