"""One order, one timeline: which updates belong together, and which would go backward.

An update belongs to the order named by its Z-API instance and ``orderRequestId`` (both
endpoints carry it), or by the shop's own order number (:class:`ShopOrderKey`: send-order's
``order_key`` kwarg, a short update's ``orderKey``), whose line covers the order message
itself; status and payment updates of one order share one timeline, and an order's state is
the pair (``orderStatus``, ``paymentStatus``) that both endpoints carry.

Forward only, against what the order last showed the customer:

* ``orderStatus`` moves pending -> processing -> shipped -> completed, or to canceled from any
  state but completed; completed and canceled are final;
* ``paymentStatus`` moves pending -> paid;
* the same state again (a new ``message`` for ``shipped``) is allowed;
* an update whose ``sequence`` is older than the last delivered one is behind too.

This module is the pure part (rules, message inspection); the per-order state in Redis is
:mod:`tasks.state.orders`, and :mod:`tasks.delivery` puts both together.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .delivery_record import key_part
from .endpoints import TASK_NAMES, Endpoint
from .job_kwargs import valid_sequence
from .order_key import order_key_problem

ORDER_STATUS_RANK = {"pending": 0, "processing": 1, "shipped": 2, "completed": 3}
PAYMENT_STATUS_RANK = {"pending": 0, "paid": 1}
FINAL_ORDER_STATUSES = frozenset({"completed", "canceled"})

#: Prefix of the orders' keys (tasks/state/orders.py documents them and their TTL).
ORDER_PREFIX = "zapi-queue:order:"
#: The same keys of an order named by the shop's own number: a prefix apart, so that no
#: ``orderRequestId`` can name the line of a shop's key, or the reverse.
ORDER_KEY_PREFIX = "zapi-queue:order-key:"
#: Each job's story, steps oldest first (tasks/state/history.py documents it); a producer
#: writes a job's first step, ``enqueued``, in the round trip that puts it in its line.
HISTORY_PREFIX = "zapi-queue:history:"
#: How long a producer keeps that step unless CELERY_RESULT_EXPIRES says: the workers' default.
DEFAULT_HISTORY_TTL = 7 * 86_400
#: The task names whose jobs stand in an order's line (the public contract's names).
ORDER_TASKS = frozenset(TASK_NAMES.values())
#: The task that sends an order message (its ``order_key`` kwarg names its order's line).
SEND_ORDER_TASK = Endpoint.SEND_ORDER.task_name
#: ZAPI_ORDER_TTL's default: 90 days.
DEFAULT_ORDER_TTL = 90 * 86_400


class ShopOrderKey(str):
    """A shop's own order number naming an order (``order_key``, ``orderKey``), as opposed to
    Z-API's ``orderRequestId``: the type says which key family its line lives in."""

    __slots__ = ()


def is_order_key(value: Any) -> bool:
    """The rule of a shop's order number (tasks/contract/order_key.py)."""
    return order_key_problem(value) is None


def order_keys(instance_id: str, order: str) -> tuple[str, str, str]:
    """The line, jobs and state keys of ``order`` (an ``orderRequestId``, or a
    :class:`ShopOrderKey`) of an instance; the id escaped (``key_part``), so that no two orders
    share a key, whatever their ids hold."""
    prefix = ORDER_KEY_PREFIX if isinstance(order, ShopOrderKey) else ORDER_PREFIX
    base = f"{prefix}{instance_id}:{key_part(order)}"
    return base + ":line", base + ":jobs", base + ":state"


def story_key(keys: tuple[str, str, str]) -> str:
    """An order's jobs for its page (tasks/state/history.py), beside its line."""
    return keys[0].removesuffix(":line") + ":story"


def register_in_line(
    pipe: Any,
    keys: tuple[str, str, str],
    job: str,
    position: int,
    ttl: int,
    *,
    history_ttl: int = DEFAULT_HISTORY_TTL,
) -> None:
    """Queue on a Redis pipeline what puts ``job`` in its order's line at ``position`` (unless
    it is there), among its order's jobs, and its first step, ``enqueued``: a producer does it
    in the round trip before it publishes."""
    line, jobs, _ = keys
    pipe.zadd(line, {job: position}, nx=True)
    pipe.hsetnx(jobs, job, position)
    pipe.expire(line, ttl)
    pipe.expire(jobs, ttl)
    story = story_key(keys)
    pipe.zadd(story, {job: position}, nx=True)
    pipe.expire(story, ttl)
    step = json.dumps({"t": round(time.time(), 3), "k": "enqueued", "position": position})
    pipe.rpush(HISTORY_PREFIX + job, step)
    pipe.expire(HISTORY_PREFIX + job, history_ttl)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What an order last showed the customer: the delivered update's pair, its sequence (if
    it had one), its job and when."""

    order_status: str | None = None
    payment_status: str | None = None
    sequence: int | None = None
    job_id: str | None = None
    at: float | None = None


def order_status_moves_back(delivered: str | None, new: str) -> bool:
    """True when ``new`` would take the order's status back from ``delivered``."""
    if delivered is None or new == delivered:
        return False
    if delivered in FINAL_ORDER_STATUSES:
        return True
    if new == "canceled":
        return False
    return ORDER_STATUS_RANK.get(new, -1) < ORDER_STATUS_RANK.get(delivered, -1)


def payment_status_moves_back(delivered: str | None, new: str) -> bool:
    if delivered is None:
        return False
    return PAYMENT_STATUS_RANK.get(new, -1) < PAYMENT_STATUS_RANK.get(delivered, -1)


def superseding_states(field: str, state: str) -> tuple[str, ...]:
    """The states of ``field`` (``orderStatus``, ``paymentStatus``: an update supersedes only
    older updates of its own field) a newer update of the order may carry to supersede an older
    one in ``state``: those it would not move back from. Superseding then never changes where
    the order ends, only how many messages the customer gets on the way."""
    if field == "orderStatus":
        states = (*ORDER_STATUS_RANK, "canceled")
        return tuple(new for new in states if not order_status_moves_back(state, new))
    if field == "paymentStatus":
        return tuple(
            new for new in PAYMENT_STATUS_RANK if not payment_status_moves_back(state, new)
        )
    return ()


def superseder(field: str, state: str, later: list[str]) -> int | None:
    """Which of the ``later`` states of ``field`` (the newer updates of the order, oldest
    first) supersedes an update in ``state``: the newest that moves back neither from it nor
    from any update between them, so the order ends where sending them all would; None when
    none does. orders.lua's ``newer_of`` applies the same rule inside Redis."""
    allowed = superseding_states(field, state)
    for i in range(len(later) - 1, -1, -1):
        newer = later[i]
        if newer in allowed and all(newer in superseding_states(field, s) for s in later[:i]):
            return i
    return None


def stale_reason(
    delivered: Delivered, order_status: str, payment_status: str, sequence: int | None
) -> str | None:
    """Why this update is behind its order, in one line; None when it may be sent."""
    behind = []
    if order_status_moves_back(delivered.order_status, order_status):
        behind.append(f"orderStatus {order_status} is behind {delivered.order_status}")
    if payment_status_moves_back(delivered.payment_status, payment_status):
        behind.append(f"paymentStatus {payment_status} is behind {delivered.payment_status}")
    if sequence is not None and delivered.sequence is not None and sequence < delivered.sequence:
        behind.append(f"sequence {sequence} is older than {delivered.sequence}")
    if not behind:
        return None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(delivered.at or 0))
    return f"{'; '.join(behind)} (delivered {when} by job {delivered.job_id}): not sent"


def order_request_id(body: Any) -> str | None:
    """The order a raw body belongs to, before (or without) validation."""
    order = body.get("orderRequestId") if isinstance(body, dict) else None
    return order if isinstance(order, str) and order.strip() else None


def order_of(task: str | None, body: Any, kwargs: dict[str, Any]) -> str | None:
    """The order a raw call belongs to, before (or without) validation: the shop's key of a
    send-order (its ``order_key``) or of a short update (``orderKey``), else the body's
    ``orderRequestId``; None when it names none (or names it wrongly: then it stands alone,
    and its execution fails saying why)."""
    if task == SEND_ORDER_TASK:
        key = kwargs.get("order_key")
        return ShopOrderKey(key) if is_order_key(key) else None
    key = body.get("orderKey") if isinstance(body, dict) else None
    if key is not None:
        return ShopOrderKey(key) if is_order_key(key) else None
    return order_request_id(body)


@dataclass(frozen=True, slots=True)
class Arrival:
    """An order update seen in a raw broker message: its job, order and declared sequence."""

    job_id: str
    #: Its order: an ``orderRequestId``, or a :class:`ShopOrderKey`.
    order: str
    sequence: int | None
    instance: str | None = None
    """The job's ``instance`` kwarg (an alias), when it names one."""
    due: int | None = None
    """When the message may run (its ``eta``, from a countdown), µs of the epoch; None: now."""


def eta_of(headers: dict[str, Any]) -> int | None:
    """A message's ``eta`` header (Celery's ISO 8601 time) in µs of the epoch, or None when it
    has none or it cannot be read (Celery's own reading of it then decides)."""
    eta = headers.get("eta")
    if not isinstance(eta, str):
        return None
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # Celery's eta is UTC (enable_utc)
    try:
        return round(when.timestamp() * 1_000_000)
    except (OverflowError, OSError, ValueError):
        return None


def task_call(payload: Any) -> tuple[list[Any], dict[str, Any]] | None:
    """The (args, kwargs) a kombu message (a decoded envelope of Celery's protocol 2, JSON)
    carries, or None when it carries no such call."""
    raw = payload.get("body") if isinstance(payload, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            raw = base64.b64decode(raw).decode()
        args, kwargs, *_ = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(args, list):
        return None
    return args, kwargs if isinstance(kwargs, dict) else {}


def arrival_of(payload: dict[str, Any]) -> Arrival | None:
    """The order update a kombu message carries (Celery's protocol 2, JSON), or None.

    Read by the transport as the message is fetched, so an update has its place in its order's
    line before any later update of that order can start (worker/transport.py)."""
    headers = payload.get("headers") or {}
    if headers.get("task") not in ORDER_TASKS or not isinstance(headers.get("id"), str):
        return None
    call = task_call(payload)
    if call is None or not call[0]:
        return None
    args, kwargs = call
    order = order_of(headers["task"], args[0], kwargs)
    if order is None:
        return None
    sequence = kwargs.get("sequence")
    valid = valid_sequence(sequence)  # else it stands by its arrival, and fails at its start
    instance = kwargs.get("instance")
    return Arrival(
        headers["id"],
        order,
        sequence if valid else None,
        instance if isinstance(instance, str) else None,
        eta_of(headers),
    )
