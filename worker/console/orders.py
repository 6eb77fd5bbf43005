"""The console's order and job pages: one order's whole story from any of its names, one job's.

``/orders`` searches (an ``orderRequestId``, an order message's ``messageId``, a shop's
``orderKey``; ``?instance=ALIAS`` for another instance than ``default``); ``/orders/{name}`` shows
the order's snapshot (phone masked) and the timeline of every job of the order
(tasks/order_story.py); ``/jobs/{id}`` one job's steps, its state and result, with links to its
order and its dead letter. Everything shown comes from Redis stores whose steps hold no personal
data; the snapshot's phone and any PIX key are masked here.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from config import Settings
from config.instances import DEFAULT_ALIAS
from tasks.contract.redaction import mask_phone, masked_body
from tasks.order_story import TASK_LABELS, OrderStory, find_story, job_links, timeline
from tasks.state.history import JobHistory
from tasks.state.keys import RESULT_PREFIX
from tasks.state.store import connect
from tasks.state.supersedes import SupersedeBook
from worker.console.app import render

#: A name longer than this is no order's (ids are short; the shop's key at most 100).
MAX_NAME = 200


def instance_ids(settings: Settings) -> dict[str, str]:
    """The fleet's instance ids by alias: the console needs no token (compose passes it
    ``ZAPI_INSTANCE_ID`` alone), so ``default`` is that id even without its credentials."""
    ids = {alias: instance.instance_id for alias, instance in settings.instances().items()}
    if settings.zapi_instance_id:
        ids.setdefault(DEFAULT_ALIAS, settings.zapi_instance_id)
    return ids


def _instance(settings: Settings, alias: str | None) -> tuple[str, str]:
    """(alias, instance id) of the instance a page asks for (default: ``default``)."""
    alias = alias or DEFAULT_ALIAS
    found = instance_ids(settings).get(alias)
    if found is None:
        raise HTTPException(404, f"no instance {alias!r} in this fleet")
    return alias, found


def _name(raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise HTTPException(400, "an order is named by its orderRequestId, messageId or orderKey")
    return name


async def orders(request: Request) -> Response:
    """The search box; a search goes to the order's page."""
    query = request.query_params.get("q")
    if query:
        alias = request.query_params.get("instance") or "default"
        url = request.url_for("order", name=_name(query)).include_query_params(instance=alias)
        return RedirectResponse(str(url), status_code=303)
    settings: Settings = request.app.state.settings
    aliases = sorted(instance_ids(settings))
    return render(request, "orders.html", section="/orders", aliases=aliases)


def _snapshot_view(story: OrderStory) -> dict[str, Any] | None:
    if story.snapshot is None:
        return None
    data: dict[str, Any] = dict(masked_body(dict(story.snapshot.data), show_phone=True))
    data["phone"] = mask_phone(str(story.snapshot.data.get("phone")))
    data["orderStatus"] = story.snapshot.order_status
    data["paymentStatus"] = story.snapshot.payment_status
    return data


async def order(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    name = _name(request.path_params["name"])
    alias, instance_id = _instance(settings, request.query_params.get("instance"))
    story = await run_in_threadpool(
        find_story,
        request.app.state.redis,
        instance_id,
        name,
        order_ttl=settings.zapi_order_ttl,
        result_ttl=settings.celery_result_expires,
    )
    if story is None:
        raise HTTPException(404, f"nothing is known of order {name} on instance {alias}")
    return render(
        request,
        "order.html",
        section="/orders",
        name=name,
        instance=alias,
        story=story,
        snapshot=_snapshot_view(story),
        rows=timeline(story.jobs),
        labels=TASK_LABELS,
    )


def result_of(request: Request, job_id: str) -> tuple[str, Any]:
    """The job's state and result as the result backend keeps them (Celery's JSON meta), read
    with a plain client: the console needs no Celery app. ``PENDING`` when none is kept."""
    results = getattr(request.app.state, "results", None)
    if results is None:
        settings: Settings = request.app.state.settings
        results = connect(settings.celery_result_backend.get_secret_value(), retries=1)
        request.app.state.results = results
    raw = results.get(RESULT_PREFIX + job_id)
    try:
        meta = json.loads(raw) if raw is not None else {}
    except ValueError:
        meta = {}
    return str(meta.get("status") or "PENDING"), meta.get("result")


def _job_view(request: Request, job_id: str) -> dict[str, Any]:
    """What the job page shows (a thread: Redis and the result backend)."""
    settings: Settings = request.app.state.settings
    client = request.app.state.redis
    story = JobHistory(client, ttl=settings.celery_result_expires).of(job_id)
    state, outcome = result_of(request, job_id)
    error = None
    if state == "FAILURE" and isinstance(outcome, dict):
        error = f"{outcome.get('exc_type')}: {' '.join(map(str, outcome.get('exc_message') or []))}"
    reply = outcome if state == "SUCCESS" and isinstance(outcome, dict) else None
    links = job_links(story)
    letter = request.app.state.dead_letters.get(job_id)
    superseded = SupersedeBook(client, ttl=settings.celery_result_expires).of(job_id)
    return {
        "job_id": job_id,
        "story": story,
        "label": TASK_LABELS.get(story.task, story.task or "job"),
        "state": state,
        "error": error,
        "reply": reply,
        "order": links["order"],
        "dead_letter": letter is not None,
        "superseded": [entry.describe() for entry in superseded],
        "rows": timeline([story]),
    }


async def job(request: Request) -> Response:
    job_id = _name(request.path_params["job_id"])
    view = await run_in_threadpool(_job_view, request, job_id)
    if not view["story"].steps and view["state"] == "PENDING":
        raise HTTPException(404, f"nothing is known of job {job_id} (results expire)")
    return render(request, "job.html", section="/orders", **view)


routes = [
    Route("/orders", orders, methods=["GET"], name="orders"),
    Route("/orders/{name:path}", order, methods=["GET"], name="order"),
    Route("/jobs/{job_id}", job, methods=["GET"], name="job"),
]
