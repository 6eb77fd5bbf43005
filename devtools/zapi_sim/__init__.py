"""A fake Z-API: a real HTTP server on loopback that answers like Z-API's docs and FACTS.md say.

What it reproduces, in the order Z-API appears to check things:

* an unknown route answers **HTTP 200** ``{"error": "NOT_FOUND", "message": ...}``;
* a method other than POST answers 405; a body that is not ``application/json`` answers 415;
* no Client-Token answers 400 ``your client-token is not configured``; a wrong one answers 403
  and echoes it (``Client-Token <value> not allowed``), which is why we redact error text;
* a wrong instance id or token answers 400 (not documented by Z-API; our choice);
* a body that is not JSON, or lacks a required field, answers 400 ``{"error": ...}``;
* success answers 200 ``{"zaapId", "messageId", "id"}`` with ``id == messageId``;
* ``GET .../status`` answers ``{"connected", "error", "smartphoneConnected"}`` after the same
  credential checks (an instance is connected until :meth:`ZapiSimulator.set_connected` says
  otherwise); these polls are kept apart from the updates (:meth:`ZapiSimulator.status_polls`).
* ``PUT .../update-every-webhooks`` and ``.../update-notify-sent-by-me`` answer ``{"value":
  true}`` (a non-HTTPS URL: a 200 carrying an error) and are remembered per instance
  (:meth:`ZapiSimulator.webhook_settings`); ``GET .../me`` gives them back with the instance's
  data, as Z-API does.
* ``POST .../send-order`` checks its body with the worker's schema (400 ``{"error": ...}``
  naming the first problem) and answers like an update.
* while an instance is disconnected, every send it accepts waits in the instance's own queue
  (up to 1,000, then a 400, a guess), and plays no callback; on reconnect the queue fires by
  itself, in order, ``queue_spacing`` seconds apart (Z-API's 1-3 s scaled down), a send that
  arrives meanwhile behind it. ``POST .../queue`` pages it (``pageSize``, ``pagingState``,
  ``hasMore``), ``DELETE .../queue/{zaapId}`` and ``DELETE .../queue`` edit it
  (routes/queue.py); :meth:`ZapiSimulator.fired` is what reached the phone, webhook URL or not.

Given a ``webhook_url`` it also plays Z-API's webhooks (devtools/zapi_callbacks.py): after
each accepted update a ``DeliveryCallback`` (failing for a ``delivery_failure_rate`` share) and
``MessageStatusCallback`` SENT, RECEIVED, READ; for a send-order, when the instance has
``notifySentByMe`` on, first the fromMe ``ReceivedCallback`` with ``reviewAndPay`` and generated
ids (``order_callback``: after the reply, before it, or never; ``order_callback_delay``); and
:meth:`ZapiSimulator.post_order` posts a ``ReceivedCallback`` with ``reviewAndPay`` for a new
order.

For tests and benchmarks it adds latency (fixed, plus random jitter), random HTTP 500s at a
given rate (seeded), an optional rate limit (429 with ``Retry-After: 1`` once
more than ``rate_limit + rate_burst`` requests arrive in a sliding second), scripted faults
per ``messageId`` (a status with a body and headers, a delay, or a dropped connection), and a
record of every request received. In-process users call the methods; other processes use the
control routes under ``/__sim__/``. Run it alone with ``python -m devtools.zapi_sim``.

The parts, one module each: ``config`` (the set-up and its defaults), ``records`` (what was
received), ``switches`` (faults, outages, connection, 429s, random draws), ``outbox`` (what
reaches the phone, at once or through the queue), ``webhooks`` (which callback an event
posts), ``routes/`` (one module per endpoint family, ``common`` for the checks they share),
``control`` (the ``/__sim__/`` routes), ``server`` (the HTTP plumbing), ``simulator``
(ZapiSimulator, which puts them together) and ``cli`` (``python -m``).
"""

from devtools.zapi_sim.config import (
    DEFAULT_CLIENT_TOKEN,
    DEFAULT_INSTANCE_ID,
    DEFAULT_INSTANCE_TOKEN,
    OtherInstance,
    SimulatorConfig,
    SimulatorOptions,
)
from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.routes import ENDPOINTS, NOT_FOUND_BODY
from devtools.zapi_sim.routes.updates import REQUIRED_FIELDS
from devtools.zapi_sim.simulator import ZapiSimulator
from devtools.zapi_sim.switches import NOT_CONNECTED, Fault

__all__ = [
    "DEFAULT_CLIENT_TOKEN",
    "DEFAULT_INSTANCE_ID",
    "DEFAULT_INSTANCE_TOKEN",
    "ENDPOINTS",
    "NOT_CONNECTED",
    "NOT_FOUND_BODY",
    "REQUIRED_FIELDS",
    "Fault",
    "OtherInstance",
    "ReceivedRequest",
    "SimulatorConfig",
    "SimulatorOptions",
    "ZapiSimulator",
]
