"""``POST .../send-order``: the order message itself, whose ids the update routes then need.

Z-API checks the body (the fake with the worker's own schema, Endpoint.SEND_ORDER.schema, and
names the first problem as the update routes name the first missing field), then sends it
(or queues it, its phone disconnected: devtools/zapi_sim/outbox.py). As it reaches the phone,
the fake plays the callbacks of any send and, when the instance has ``notifySentByMe`` on
(``update-notify-sent-by-me``, ``update-every-webhooks``), the fromMe ReceivedCallback that
carries the order's ``referenceId``, ``orderRequestId`` and the custom items' ids
(devtools/zapi_sim/webhooks.py). A send-order body has no ``messageId``: faults scripted per
``messageId`` cannot reach it; outages, 429s, latency and random 500s do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from devtools.zapi_sim.routes import common
from tasks.contract.endpoints import Endpoint
from tasks.contract.validation import describe

if TYPE_CHECKING:
    from devtools.zapi_sim.records import ReceivedRequest
    from devtools.zapi_sim.simulator import ZapiSimulator
    from devtools.zapi_sim.switches import Fault


def answer(
    sim: ZapiSimulator, request: ReceivedRequest, route: common.Route
) -> common.Answer | Fault:
    """Z-API's answer to a send-order: its refusal, a switch's misbehaviour, or its reply."""
    data = common.json_request(sim, request, route)
    if isinstance(data, tuple):
        return data
    try:
        body = Endpoint.SEND_ORDER.schema.model_validate(data).to_wire()
    except ValidationError as exc:
        return 400, {"error": describe(exc)[0]}, {}
    held = common.misbehaviour(sim, request, route)
    if held is not None:
        return held
    settings = sim.instance_settings.of(route.instance) or {}
    notify = bool(settings.get("notifySentByMe"))
    return common.deliver(
        sim,
        route,
        body,
        lambda reply: sim.webhooks.after_order_sent(
            route.instance, body, reply, notify_sent_by_me=notify
        ),
    )


#: The routes of this family, by their path's last part.
ROUTES: dict[str, common.RouteAnswer] = {Endpoint.SEND_ORDER: answer}
