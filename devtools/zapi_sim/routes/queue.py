"""The instance's own queue, as Z-API's queue docs describe it (FACTS.md, "Z-API's own queue").

* ``POST .../queue``, body ``{}`` or ``{"pageSize": N, "pagingState": "..."}``: a page of the
  queue in firing order, ``{"messages": [...], "pagingState", "hasMore"}``. ``pageSize``
  defaults to 20; above Z-API's maximum of 30 the fake gives 30 (a guess: Z-API's docs give
  the maximum, not what a larger one does). ``pagingState`` is opaque (here: where the page
  ended, so a message deleted meanwhile neither shifts nor repeats a page); on the last page
  it is null. A ``pagingState`` the fake did not make answers 400 (a guess).
* ``DELETE .../queue/{zaapId}``: removes that message. Z-API's docs only say "200: removed";
  the fake answers ``{"value": true}``, and for a zaapId not in the queue (never queued,
  deleted, or already fired) 200 ``{"value": false}`` (a guess).
* ``DELETE .../queue``: removes everything, ``{"value": true}``; ``GET .../queue/count``:
  ``{"count": N}``.

Every route makes the credential checks of the others (a DELETE wants JSON's content type
too: Z-API's docs list a 415 for it), then meets an outage like the settings routes do.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.routes.common import (
    ITEM,
    Answer,
    Route,
    RouteAnswer,
    instance_read,
    json_request,
)
from devtools.zapi_sim.switches import Fault

if TYPE_CHECKING:
    from devtools.zapi_sim.outbox import Queued
    from devtools.zapi_sim.simulator import ZapiSimulator

QUEUE_ROUTE = "queue"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 30
#: The path's item that asks for the count rather than names a message (``GET .../queue/count``).
COUNT = "count"


def queue(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | Fault:
    """``POST``: a page of the queue; ``DELETE``: all of it removed."""
    method = "DELETE" if request.method == "DELETE" else "POST"
    data = json_request(sim, request, route, method, body=method == "POST")
    if not isinstance(data, dict):
        return data
    fault = sim.switches.next_fault(None, route.instance)
    if fault is not None:
        return fault
    if method == "DELETE":
        sim.outbox.clear(route.instance)
        return 200, {"value": True}, {}
    return page(sim, route.instance, data)


def queued_item(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | Fault:
    """``DELETE .../queue/{zaapId}``: one message removed; ``GET .../queue/count``."""
    if request.method == "GET" and route.item == COUNT:
        refused, _ = instance_read(sim, request, route)
        if refused is not None:
            return refused
        return 200, {"count": len(sim.outbox.queued(route.instance))}, {}
    data = json_request(sim, request, route, "DELETE", body=False)
    if not isinstance(data, dict):
        return data
    fault = sim.switches.next_fault(None, route.instance)
    if fault is not None:
        return fault
    return 200, {"value": sim.outbox.remove(route.instance, str(route.item))}, {}


def page(sim: ZapiSimulator, instance_id: str, data: dict[str, Any]) -> Answer:
    """The page ``data`` asks for, or Z-API's 400 for a ``pageSize`` or ``pagingState`` it
    cannot read."""
    size = data.get("pageSize", DEFAULT_PAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return 400, {"error": "pageSize must be a positive integer"}, {}
    after = _after(data.get("pagingState"))
    if after is None:
        return 400, {"error": "Invalid pagingState"}, {}
    size = min(size, MAX_PAGE_SIZE)
    entries = sim.outbox.queued(instance_id, after, size + 1)
    shown, has_more = entries[:size], len(entries) > size
    body = {
        "messages": [message(instance_id, entry) for entry in shown],
        "pagingState": _paging_state(shown[-1].seq) if has_more else None,
        "hasMore": has_more,
    }
    return 200, body, {}


def message(instance_id: str, entry: Queued) -> dict[str, Any]:
    """One queued message in Z-API's fields (``Created`` in epoch ms, as its example)."""
    send = entry.send
    body = send.body
    return {
        "_id": send.zaap_id,
        "ZaapId": send.zaap_id,
        "MessageId": send.message_id,
        "Phone": str(body.get("phone", "")),
        "Message": _text(body),
        "InstanceId": instance_id,
        "DelayMessage": body.get("delayMessage", -1),
        "DelayTyping": body.get("delayTyping", -1),
        "Created": int(send.accepted_at * 1000),
        "CreatedAt": datetime.fromtimestamp(send.accepted_at, UTC).isoformat(),
        "IsTrial": False,
        "Beta": False,
    }


def _text(body: dict[str, Any]) -> str:
    """The message's text: the shop's ``message``, else what an order message would say."""
    text = body.get("message")
    if isinstance(text, str) and text:
        return text
    if "orderStatus" in body:
        return f"Order {body.get('orderRequestId', '')}: {body['orderStatus']}"
    return "Order message"


def _paging_state(seq: int) -> str:
    raw = json.dumps({"after": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _after(state: Any) -> int | None:
    """Where the page a ``pagingState`` continues starts (0: the first page); None when the
    fake did not make it."""
    if state is None:
        return 0
    if not isinstance(state, str):
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(state.encode()))
    except (ValueError, binascii.Error):
        return None
    after = decoded.get("after") if isinstance(decoded, dict) else None
    return after if isinstance(after, int) and not isinstance(after, bool) else None


#: The routes of this family, by their path's last part.
ROUTES: dict[str, RouteAnswer] = {QUEUE_ROUTE: queue, f"{QUEUE_ROUTE}/{ITEM}": queued_item}
