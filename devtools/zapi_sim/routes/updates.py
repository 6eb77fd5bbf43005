"""The order update routes, ``order-status-update`` and ``order-payment-update``.

Z-API checks the fields an update needs (the first one missing is named), then sends it (or
queues it, its phone disconnected); the fake then plays its webhooks for the update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.routes.common import (
    Answer,
    Route,
    RouteAnswer,
    deliver,
    json_request,
    misbehaviour,
)
from devtools.zapi_sim.switches import Fault
from tasks.contract.endpoints import Endpoint

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator

REQUIRED_FIELDS = (
    "phone",
    "messageId",
    "referenceId",
    "orderRequestId",
    "orderStatus",
    "paymentStatus",
    "order",
)


def answer(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | Fault:
    """Z-API's answer to an update: its refusal, a switch's misbehaviour, or its reply."""
    data = json_request(sim, request, route)
    if isinstance(data, tuple):
        return data
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        return 400, {"error": f"{missing[0]} is required"}, {}
    held = misbehaviour(sim, request, route)
    if held is not None:
        return held
    return deliver(
        sim, route, data, lambda reply: sim.webhooks.after_accept(data, reply, route.instance)
    )


#: The routes of this family, by their path's last part.
ROUTES: dict[str, RouteAnswer] = {
    Endpoint.ORDER_STATUS_UPDATE: answer,
    Endpoint.ORDER_PAYMENT_UPDATE: answer,
}
