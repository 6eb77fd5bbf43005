"""``GET .../status``: the instance's connection, after the same credential checks as a send.

An instance is connected until a test says otherwise (:meth:`ZapiSimulator.set_connected`); an
outage applies here too, as the worker's health checks must see it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.routes.common import Answer, Route, RouteAnswer, instance_read
from devtools.zapi_sim.switches import Fault

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator

STATUS_ROUTE = "status"


def answer(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | Fault:
    """The connection as ``{"connected", "error", "smartphoneConnected"}``, or a refusal."""
    refused, error = instance_read(sim, request, route)
    if refused is not None:
        return refused
    if error is not None:
        return 200, {"connected": False, "error": error, "smartphoneConnected": False}, {}
    return 200, {"connected": True, "error": None, "smartphoneConnected": True}, {}


#: The routes of this family, by their path's last part.
ROUTES: dict[str, RouteAnswer] = {STATUS_ROUTE: answer}
