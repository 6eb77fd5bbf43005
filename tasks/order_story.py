"""One order's whole story, from any of its names, for the console's order page.

An order is named by its ``orderRequestId``, its order message's ``messageId``, or the shop's
own key (send-order's ``order_key``). Its jobs stand in up to two lines: the key's (the order
message and the updates by ``orderKey``) and the ``orderRequestId``'s (the updates by Z-API's
ids); the story merges both, by position (tasks/state/history.py), with each job's steps and,
what the book knows of the order (its snapshot, phone masked by whoever shows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import redis

from tasks.contract.ordering import ShopOrderKey
from tasks.state.book import OrderBook, Snapshot
from tasks.state.history import JobHistory, JobStory, story_key
from tasks.state.store import text


@dataclass(frozen=True)
class OrderStory:
    """What the order page shows of one order of one instance."""

    instance_id: str
    #: The order's ``orderRequestId`` when known, else the shop's key.
    order: str
    key: str | None
    snapshot: Snapshot | None
    #: What the book links to the shop's key: the order message's ids, its job, when.
    order_message: dict[str, str] = field(default_factory=dict)
    jobs: list[JobStory] = field(default_factory=list)


def find_story(
    client: redis.Redis,
    instance_id: str,
    name: str,
    *,
    order_ttl: int,
    result_ttl: int,
) -> OrderStory | None:
    """The order ``name`` names (any of its three names), or None when nothing is known."""
    book = OrderBook(client, instance_id=instance_id, ttl=order_ttl)
    history = JobHistory(client, ttl=result_ttl)
    snapshot = (
        book.find(order_request_id=name) or book.find(message_id=name) or book.find(order_key=name)
    )
    sent = book.order_message(name)
    key = name if sent else None
    order_request_id = snapshot.order_request_id if snapshot is not None else None
    lines: list[str] = []
    if key is not None:
        lines.append(ShopOrderKey(key))
    if order_request_id:
        lines.append(order_request_id)
    elif not lines:
        lines.append(name)  # an order the book never had may still have jobs
    positions: dict[str, float] = {}
    for line in lines:
        scored = cast(
            "list[tuple[bytes, float]]",
            client.zrange(story_key(instance_id, line), 0, -1, withscores=True),
        )
        for job, position in scored:
            positions.setdefault(text(job), float(position))
    if snapshot is None and not sent and not positions:
        return None
    ordered = sorted(positions, key=lambda job_id: positions[job_id])
    return OrderStory(
        instance_id=instance_id,
        order=order_request_id or name,
        key=key,
        snapshot=snapshot,
        order_message=sent,
        jobs=history.of_many(ordered),
    )


def job_links(story: JobStory) -> dict[str, Any]:
    """What a job's page links to: its order (its head's) and, if it ended dead, its letter."""
    dead = any(step.kind == "dead" for step in story.steps)
    return {"order": story.order, "dead_letter": story.job_id if dead else None}


#: How each endpoint's job is named on a page.
TASK_LABELS = {
    "zapi.order_status_update": "status update",
    "zapi.order_payment_update": "payment update",
    "zapi.send_order": "order message",
}
#: A step's tone on a page: fine, waiting, or gone wrong.
TONES = {
    "delivered": "ok",
    "delivery": "ok",
    "deduplicated": "ok",
    "enqueued": "info",
    "wait": "wait",
    "deferred": "wait",
    "retry": "warn",
    "superseded": "info",
    "refused": "bad",
    "gave-up": "bad",
    "dead": "bad",
    "ended": "bad",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a timeline: when, which job, what happened, in words, and its tone."""

    at: float
    job_id: str
    label: str
    kind: str
    text: str
    tone: str


def describe(kind: str, fields: dict[str, Any]) -> str:
    """A step in words. Its fields hold no personal data (tasks/state/history.py)."""
    detail = str(fields.get("detail") or "")
    attempt = f"attempt {fields['attempt']}: " if fields.get("attempt") else ""
    took = f" in {fields['ms']:g} ms" if isinstance(fields.get("ms"), int | float) else ""
    status = f"HTTP {fields['status']}{took}" if fields.get("status") else took.strip()
    if kind == "enqueued":
        return f"enqueued at position {fields.get('position')}"
    if kind == "wait":
        return f"waiting ({str(fields.get('why', 'wait')).replace('_', ' ')}): {detail}"
    if kind == "delivered":
        ids = f"zaapId {fields.get('zaapId')}, messageId {fields.get('messageId')}"
        return f"{attempt}sent, {status}: {ids}"
    if kind == "delivery":
        state = str(fields.get("state"))
        if state == "withdrawn":
            return f"withdrawn from Z-API's queue ({fields.get('why')}) for job {fields.get('by')}"
        error = f": {fields.get('error')}" if fields.get("error") else ""
        return f"Z-API: {state}{error}"
    if kind in ("dead", "ended"):
        text = str(fields.get("error"))
        return f"dead letter ({text})" if kind == "dead" else f"{text}: {detail}"
    return f"{attempt}{kind}{', ' + status if status else ''}{': ' + detail if detail else ''}"


def timeline(jobs: list[JobStory]) -> list[Row]:
    """Every step of ``jobs``, by time (a job's steps keep their order on a tie)."""
    rows = [
        Row(
            step.at,
            job.job_id,
            TASK_LABELS.get(job.task, job.task or "job"),
            step.kind,
            describe(step.kind, step.fields),
            TONES.get(step.kind, "info"),
        )
        for job in jobs
        for step in job.steps
    ]
    return sorted(rows, key=lambda row: row.at)
