"""The fake Z-API's routes under ``/instances/{id}/token/{token}/``: one module per family.

:data:`ROUTES` maps a path's last part to its module's answer (a path ending in an item,
``queue/{zaapId}``, as ``queue/{}``: Route.key); an endpoint family (a new Z-API route the
worker calls) is a module with its own ``ROUTES``, merged here. Any other path answers
as Z-API does, **HTTP 200** with ``NOT_FOUND``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.routes import instance_settings, orders, queue, status, updates
from devtools.zapi_sim.routes.common import Answer, RouteAnswer, parse_route
from devtools.zapi_sim.switches import Fault
from tasks.contract.endpoints import Endpoint

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator

NOT_FOUND_BODY = {"error": "NOT_FOUND", "message": "Unable to find matching target resource method"}
ROUTES: dict[str, RouteAnswer] = {
    **updates.ROUTES,
    **orders.ROUTES,
    **status.ROUTES,
    **instance_settings.ROUTES,
    **queue.ROUTES,
}
#: The routes of the worker's endpoint registry that the fake answers (tests check it has all).
ENDPOINTS = frozenset(name for name in ROUTES if isinstance(name, Endpoint))


def answer(sim: ZapiSimulator, request: ReceivedRequest) -> Answer | Fault:
    """Z-API's answer to ``request`` as (status, JSON body, headers), or a Fault to act out."""
    route = parse_route(request.path)
    found = ROUTES.get(route.key) if route is not None else None
    if route is None or found is None:
        return 200, NOT_FOUND_BODY, {}
    return found(sim, request, route)


def is_status_poll(request: ReceivedRequest) -> bool:
    """A health check, recorded apart from the sends."""
    route = parse_route(request.path)
    return route is not None and route.key == status.STATUS_ROUTE


def is_queue_call(request: ReceivedRequest) -> bool:
    """A read or edit of the instance's queue, recorded apart from the sends too."""
    route = parse_route(request.path)
    return route is not None and route.endpoint == queue.QUEUE_ROUTE
