"""What the fake Z-API's routes share: a path's parts, the checks every route makes first, and
the behaviour switches a send meets, each in the order Z-API appears to apply them.

A route module (one per endpoint family) calls these, then adds what is its own: an update's
required fields, the status route's connection, and so on.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devtools.zapi_sim.outbox import Send
from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.switches import Fault

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator

#: Z-API's answer as (HTTP status, JSON body, headers).
Answer = tuple[int, Any, dict[str, str]]
#: A route's answer to a request (a Fault is acted out by the server: a delay, a drop).
RouteAnswer = Callable[["ZapiSimulator", "ReceivedRequest", "Route"], Answer | Fault]

_ROUTE = re.compile(
    r"^/instances/(?P<instance>[^/]+)/token/(?P<token>[^/]+)/(?P<endpoint>[^/?]+)"
    r"(?:/(?P<item>[^/?]+))?$"
)
#: How :data:`ROUTES` keys a route with an item in its path (``queue/{zaapId}``: ``queue/{}``).
ITEM = "{}"
#: Z-API's refusal of a send when the disconnected phone's queue is full. A guess: Z-API's docs
#: say it refuses, not how; a 400 (not retryable by the worker's rules) with a plain error.
QUEUE_FULL: Answer = (400, {"error": "QUEUE_FULL", "message": "Queue limit reached"}, {})


@dataclass(frozen=True)
class Route:
    """The parts of ``/instances/{instance}/token/{token}/{endpoint}[/{item}]``."""

    instance: str
    token: str
    endpoint: str
    item: str | None = None

    @property
    def key(self) -> str:
        """Its key in the routes' table: the endpoint, or ``endpoint/{}`` with an item."""
        return self.endpoint if self.item is None else f"{self.endpoint}/{ITEM}"


def parse_route(path: str) -> Route | None:
    """The route a request's path names (its query left out); None for any other path."""
    found = _ROUTE.match(path.split("?", 1)[0])
    if found is None:
        return None
    return Route(found["instance"], found["token"], found["endpoint"], found["item"])


def refusal(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | None:
    """Z-API's answer to wrong credentials: a missing or wrong Client-Token, an unknown
    instance or token; None when they are right."""
    client_token = request.headers.get("client-token")
    if not client_token:
        return 400, {"error": "your client-token is not configured"}, {}
    other = sim.other_instances.get(route.instance)
    expected = (
        (other.client_token, other.instance_token)
        if other
        else (sim.client_token, sim.instance_token)
    )
    if client_token != expected[0]:
        return 403, {"error": f"Client-Token {client_token} not allowed"}, {}
    known = route.instance == sim.instance_id or other is not None
    if not known or route.token != expected[1]:
        return 400, {"error": "Instance not found"}, {}
    return None


def instance_read(
    sim: ZapiSimulator, request: ReceivedRequest, route: Route
) -> tuple[Answer | Fault | None, str | None]:
    """Z-API's refusal of a read (``status``, ``me``: 405 for another method than GET, then the
    credentials) or the instance's outage, None when it may be answered; and the instance's
    disconnection error, None while it is connected."""
    if request.method != "GET":
        return (405, {"error": "Method Not Allowed"}, {}), None
    refused = refusal(sim, request, route)
    if refused is not None:
        return refused, None
    return sim.switches.connection(route.instance)


def json_request(
    sim: ZapiSimulator,
    request: ReceivedRequest,
    route: Route,
    method: str = "POST",
    *,
    body: bool = True,
) -> dict[str, Any] | Answer:
    """The body of a JSON call with the right method and credentials, or Z-API's refusal:
    405 for another method, 415 for another content type, then the credentials, then 400 for a
    body that is not a JSON object (a call without ``body``, a DELETE: any body, read as {})."""
    if request.method != method:
        return 405, {"error": "Method Not Allowed"}, {}
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return 415, {"error": "Unsupported Media Type"}, {}
    refused = refusal(sim, request, route)
    if refused is not None:
        return refused
    if not body:
        return {}
    data = request.json
    if not isinstance(data, dict):
        return 400, {"error": "Invalid JSON body"}, {}
    return data


def misbehaviour(
    sim: ZapiSimulator, request: ReceivedRequest, route: Route
) -> Answer | Fault | None:
    """What the switches do to a valid send, in order: a scripted fault or an outage, a 429
    above the instance's rate, the latency (slept here), a random 500; None to accept it."""
    fault = sim.switches.next_fault(request.message_id, route.instance)
    if fault is not None:
        return fault
    other = sim.other_instances.get(route.instance)
    limit, burst = (
        (other.rate_limit, other.rate_burst) if other else (sim.rate_limit, sim.rate_burst)
    )
    if sim.switches.over_rate(time.monotonic(), route.instance, limit, burst):
        return 429, {"error": "Too many requests"}, {"Retry-After": "1"}
    failing, jitter = sim.switches.draw_send(sim.error_rate, sim.latency_jitter)
    delay = sim.latency + jitter
    if delay:
        time.sleep(delay)
    if failing:
        return 500, {"error": "Internal Server Error"}, {}
    return None


def deliver(
    sim: ZapiSimulator,
    route: Route,
    body: dict[str, Any],
    play: Callable[[dict[str, str]], None],
) -> Answer:
    """Accept a valid send: a fresh reply, and the send delivered at once or queued while the
    phone is disconnected (devtools/zapi_sim/outbox.py), ``play(reply)`` playing its callbacks
    when it fires; :data:`QUEUE_FULL` when the queue refuses it."""
    reply = accepted_reply()
    send = Send(route.instance, route.endpoint, body, reply, lambda: play(reply))
    if not sim.outbox.accept(send):
        return QUEUE_FULL
    return 200, reply, {}


def accepted_reply() -> dict[str, str]:
    """Z-API's reply to an accepted send: fresh ids, with ``id == messageId``."""
    message_id = secrets.token_hex(10).upper()
    return {"zaapId": secrets.token_hex(16).upper(), "messageId": message_id, "id": message_id}
