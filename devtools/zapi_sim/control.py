"""The ``/__sim__/`` control routes: the in-process controls, for other processes.

A fake in a process of its own (devtools/remote_sim.py, compose's ``zapi-sim`` service) is read
and switched through these: the record of requests and its counts, the instances' webhook
settings, a reset, the set-up, outages, scripted faults, the connection, a new order's callback;
an instance's queue (``GET /__sim__/queue?instance_id=``, the messages as ``POST .../queue``
shows them) and what reached the phone (``GET /__sim__/fired?instance_id=``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from devtools.zapi_sim.config import ORDER_CALLBACKS
from devtools.zapi_sim.routes.queue import message
from devtools.zapi_sim.switches import Fault

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator


def control(sim: ZapiSimulator, method: str, path: str, body: Any) -> tuple[int, Any]:
    """The answer to one control call as (HTTP status, JSON body); 404 for an unknown one."""
    path, _, query = path.partition("?")
    instance_id = parse_qs(query).get("instance_id", [None])[0]
    if method == "GET" and path == "/__sim__/queue":
        instance = instance_id or sim.instance_id
        return 200, [message(instance, q) for q in sim.outbox.queued(instance)]
    if method == "GET" and path == "/__sim__/fired":
        return 200, [fired.as_dict() for fired in sim.fired(instance_id)]
    if method == "GET" and path == "/__sim__/requests":
        return 200, [r.as_dict() for r in sim.requests()]
    if method == "GET" and path == "/__sim__/stats":
        return 200, sim.received.stats()
    if method == "GET" and path == "/__sim__/webhooks":
        return 200, sim.instance_settings.every()
    if method == "POST" and path == "/__sim__/reset":
        sim.reset()
        return 200, {"ok": True}
    if method == "POST" and path == "/__sim__/config" and isinstance(body, dict):
        try:
            return 200, configure(sim, body)
        except ValueError as exc:
            return 400, {"error": str(exc)}
    if method == "POST" and path == "/__sim__/order":
        try:
            return 200, sim.post_order(**(body or {}))
        except RuntimeError as exc:
            return 409, {"error": str(exc)}
    if method == "POST" and path == "/__sim__/connection" and isinstance(body, dict):
        sim.set_connected(bool(body["connected"]), body.get("instance_id"))
        return 200, {"ok": True}
    if method == "POST" and path == "/__sim__/script" and isinstance(body, dict):
        sim.script(str(body["messageId"]), *(Fault(**f) for f in body.get("faults", [])))
        return 200, {"ok": True}
    return 404, {"error": "unknown control route"}


def configure(sim: ZapiSimulator, body: dict[str, Any]) -> dict[str, Any]:
    """Change the set-up named in ``body`` (the rest stays); returns the latency and rate.
    ValueError (a 400) for a value it cannot take."""
    sim.latency = float(body.get("latency", sim.latency))
    if "rate_limit" in body:
        sim.rate_limit = None if body["rate_limit"] is None else float(body["rate_limit"])
    sim.rate_burst = int(body.get("rate_burst", sim.rate_burst))
    if "webhook_url" in body:
        sim.webhook_url = body["webhook_url"]
    sim.delivery_failure_rate = float(body.get("delivery_failure_rate", sim.delivery_failure_rate))
    sim.callbacks_before_reply = bool(
        body.get("callbacks_before_reply", sim.callbacks_before_reply)
    )
    if "order_callback" in body:
        if body["order_callback"] not in ORDER_CALLBACKS:
            raise ValueError(f"order_callback must be one of {', '.join(ORDER_CALLBACKS)}")
        sim.order_callback = body["order_callback"]
    sim.order_callback_delay = float(body.get("order_callback_delay", sim.order_callback_delay))
    sim.callback_delay = float(body.get("callback_delay", sim.callback_delay))
    sim.queue_spacing = float(body.get("queue_spacing", sim.queue_spacing))
    if "outage" in body:
        sim.set_outage(None if body["outage"] is None else Fault(**body["outage"]))
    return {"latency": sim.latency, "rate_limit": sim.rate_limit}
