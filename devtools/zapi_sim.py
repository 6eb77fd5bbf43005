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

Given a ``webhook_url`` it also plays Z-API's webhooks (devtools/zapi_callbacks.py): after
each accepted update a ``DeliveryCallback`` (failing for a ``delivery_failure_rate`` share) and
``MessageStatusCallback`` SENT, RECEIVED, READ; and :meth:`ZapiSimulator.post_order` posts a
``ReceivedCallback`` with ``reviewAndPay`` for a new order.

For tests and benchmarks it adds latency (fixed, plus random jitter), random HTTP 500s at a
given rate (seeded), an optional rate limit (429 with ``Retry-After: 1`` once
more than ``rate_limit + rate_burst`` requests arrive in a sliding second), scripted faults
per ``messageId`` (a status with a body and headers, a delay, or a dropped connection), and a
record of every request received. In-process users call the methods; other processes use the
control routes under ``/__sim__/``. Run it alone with ``python -m devtools.zapi_sim``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict, Unpack

from devtools.lifecycle import Managed
from devtools.zapi_callbacks import (
    CallbackPoster,
    PostedCallback,
    delivery_callback,
    order_message,
    status_callback,
)
from tasks.contract.endpoints import Endpoint

ENDPOINTS = frozenset(Endpoint)  # the routes of the worker's endpoint registry
REQUIRED_FIELDS = (
    "phone",
    "messageId",
    "referenceId",
    "orderRequestId",
    "orderStatus",
    "paymentStatus",
    "order",
)
# The fake's credentials unless told otherwise (the in-process, remote and CLI forms agree).
DEFAULT_INSTANCE_ID = "sim-instance"
DEFAULT_INSTANCE_TOKEN = "sim-instance-token"
DEFAULT_CLIENT_TOKEN = "sim-client-token"

NOT_FOUND_BODY = {"error": "NOT_FOUND", "message": "Unable to find matching target resource method"}
#: Seconds between an accepted update and its callbacks (Z-API's are quick, not instant).
CALLBACK_DELAY = 0.02
STATUS_ROUTE = "status"
#: What Z-API's ``GET /status`` says of an instance that is not connected (FACTS.md).
NOT_CONNECTED = "You are not connected."
_ROUTE = re.compile(r"^/instances/(?P<instance>[^/]+)/token/(?P<token>[^/]+)/(?P<endpoint>[^/?]+)$")


@dataclass
class Fault:
    """One scripted misbehaviour, used for the next request carrying its ``messageId``."""

    status: int = 503
    body: Any = field(default_factory=lambda: {"error": "Service Unavailable"})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (beyond the client's timeout: a timeout)."""
    drop: bool = False
    """Close the connection without answering."""


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int = 0

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def message_id(self) -> str | None:
        data = self.json
        return data.get("messageId") if isinstance(data, dict) else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", errors="replace")
        return data


@dataclass(frozen=True)
class OtherInstance:
    """One more Z-API instance the fake serves: its credentials and its own 429 threshold."""

    instance_token: str
    client_token: str = DEFAULT_CLIENT_TOKEN
    rate_limit: float | None = None
    rate_burst: int = 1


class SimulatorOptions(TypedDict, total=False):
    """How a fake Z-API is set up, in-process (ZapiSimulator) or not (RemoteSimulator)."""

    instance_id: str
    instance_token: str
    client_token: str
    latency: float
    latency_jitter: float
    error_rate: float
    seed: int | None
    rate_limit: float | None
    rate_burst: int
    webhook_url: str | None
    delivery_failure_rate: float
    callbacks_before_reply: bool


@dataclass(eq=False)
class SimulatorConfig:
    """The credentials a fake Z-API accepts and how it behaves; defaults for SimulatorOptions."""

    instance_id: str = DEFAULT_INSTANCE_ID
    instance_token: str = DEFAULT_INSTANCE_TOKEN
    client_token: str = DEFAULT_CLIENT_TOKEN
    latency: float = 0.0
    latency_jitter: float = 0.0
    """Up to this many seconds more per success, drawn at random."""
    error_rate: float = 0.0
    """The share of valid requests answered HTTP 500, at random (0.3: 30%)."""
    seed: int | None = None
    """Seed of the random draws (jitter, errors), for a repeatable run."""
    rate_limit: float | None = None
    rate_burst: int = 1
    webhook_url: str | None = None
    """Where to post Z-API's callbacks (None: no callbacks)."""
    delivery_failure_rate: float = 0.0
    """The share of accepted updates whose DeliveryCallback reports an error, at random."""
    callbacks_before_reply: bool = False
    """Post the DeliveryCallback before answering the update (a callback that beats the
    worker's record of the reply)."""

    def cli_args(self) -> list[str]:
        """The same set-up as ``python -m devtools.zapi_sim`` options."""
        args = [
            *("--latency", str(self.latency), "--instance-id", self.instance_id),
            *("--instance-token", self.instance_token, "--client-token", self.client_token),
            *("--rate-burst", str(self.rate_burst)),
            *("--latency-jitter", str(self.latency_jitter), "--error-rate", str(self.error_rate)),
        ]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.rate_limit is not None:
            args += ["--rate-limit", str(self.rate_limit)]
        if self.webhook_url is not None:
            args += ["--webhook-url", self.webhook_url]
        args += ["--delivery-failure-rate", str(self.delivery_failure_rate)]
        if self.callbacks_before_reply:
            args += ["--callbacks-before-reply"]
        return args


class ZapiSimulator(SimulatorConfig, Managed):
    """The fake Z-API server; use as a context manager or call start() and stop()."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, **options: Unpack[SimulatorOptions]
    ) -> None:
        SimulatorConfig.__init__(self, **options)
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._status_polls: list[ReceivedRequest] = []
        self._disconnected: dict[str, str] = {}
        self._scripts: dict[str, collections.deque[Fault]] = {}
        self._outage: Fault | None = None
        self._instance_outages: dict[str, Fault] = {}
        self._recent_by_instance: dict[str, collections.deque[float]] = {}
        #: More instances it serves (instance id -> credentials and 429 threshold), for tests.
        self.other_instances: dict[str, OtherInstance] = {}
        self._random = random.Random(self.seed)
        self._callbacks = CallbackPoster()
        self._server = _Server((host, port), _Handler)
        self._server.simulator = self
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def worker_settings(self) -> list[str]:
        """``NAME=value`` lines that point a worker at this fake (its credentials are fake)."""
        return [
            f"ZAPI_BASE_URL={self.base_url}",
            f"ZAPI_INSTANCE_ID={self.instance_id}",
            f"ZAPI_INSTANCE_TOKEN={self.instance_token}",
            f"ZAPI_CLIENT_TOKEN={self.client_token}",
        ]

    def start(self) -> ZapiSimulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="zapi-sim", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._callbacks.close()

    # -- control -------------------------------------------------------------------------------
    def script(self, message_id: str, *faults: Fault) -> None:
        """The next requests whose body has this ``messageId`` get these faults, in order."""
        with self._lock:
            self._scripts.setdefault(message_id, collections.deque()).extend(faults)

    def set_outage(self, fault: Fault | None, instance_id: str | None = None) -> None:
        """Answer every valid request (of ``instance_id`` only, if given) with ``fault`` until
        called again with None."""
        with self._lock:
            if instance_id is None:
                self._outage = fault
            elif fault is None:
                self._instance_outages.pop(instance_id, None)
            else:
                self._instance_outages[instance_id] = fault

    def set_connected(
        self, connected: bool, instance_id: str | None = None, error: str = NOT_CONNECTED
    ) -> None:
        """What ``GET .../status`` says of ``instance_id`` (default: the main instance) from
        now on; sends are still accepted, as Z-API queues them while disconnected."""
        instance_id = instance_id or self.instance_id
        with self._lock:
            if connected:
                self._disconnected.pop(instance_id, None)
            else:
                self._disconnected[instance_id] = error

    def status_polls(self) -> list[ReceivedRequest]:
        """The ``GET .../status`` requests received so far."""
        with self._lock:
            return list(self._status_polls)

    def requests(self, message_id: str | None = None) -> list[ReceivedRequest]:
        """What was received so far, optionally only requests for one ``messageId``."""
        with self._lock:
            found = list(self._requests)
        if message_id is None:
            return found
        return [r for r in found if r.message_id == message_id]

    def post_order(self, **options: Any) -> dict[str, Any]:
        """Post a ``ReceivedCallback`` with a new order to the webhook URL (options: see
        ``zapi_callbacks.order_message``); returns the payload posted."""
        if self.webhook_url is None:
            raise RuntimeError("the fake Z-API has no webhook_url to post the order to")
        payload = order_message(self.instance_id, **options)
        status = self._callbacks.post_now(self.webhook_url, payload)
        if status != 200:
            raise RuntimeError(f"the webhook answered {status} to the order message")
        return payload

    def callbacks(self) -> list[PostedCallback]:
        """The callbacks posted so far, with the receiver's answers."""
        return self._callbacks.posted()

    def drain_callbacks(self, timeout: float = 10.0) -> None:
        """Wait until every callback due was posted."""
        self._callbacks.drain(timeout)

    def _after_accept(self, data: dict[str, Any], reply: dict[str, str]) -> None:
        """Play Z-API's callbacks for an accepted update."""
        url = self.webhook_url
        if url is None:
            return
        with self._lock:
            failing = self._random.random() < self.delivery_failure_rate
            failure = self._random.randrange(1000) if failing else None
        phone = str(data.get("phone", ""))
        message_id, zaap_id = reply["messageId"], reply["zaapId"]
        delivery = delivery_callback(self.instance_id, message_id, zaap_id, phone, failure=failure)
        if self.callbacks_before_reply:
            self._callbacks.post_now(url, delivery)
        else:
            self._callbacks.post_later(url, delivery, CALLBACK_DELAY)
        if failure is None:
            for status in ("SENT", "RECEIVED", "READ"):
                payload = status_callback(self.instance_id, message_id, phone, status)
                self._callbacks.post_later(url, payload, CALLBACK_DELAY)

    def reset(self) -> None:
        self._callbacks.reset()
        with self._lock:
            self._requests.clear()
            self._status_polls.clear()
            self._disconnected.clear()
            self._scripts.clear()
            self._outage = None
            self._instance_outages.clear()
            self._recent_by_instance.clear()

    # -- behaviour -----------------------------------------------------------------------------
    def _record(self, request: ReceivedRequest) -> None:
        route = _ROUTE.match(request.path.split("?", 1)[0])
        polled = route is not None and route["endpoint"] == STATUS_ROUTE
        with self._lock:
            (self._status_polls if polled else self._requests).append(request)

    def _next_fault(self, message_id: str | None, instance_id: str) -> Fault | None:
        with self._lock:
            queue = self._scripts.get(message_id or "")
            if queue:
                return queue.popleft()
            return self._instance_outages.get(instance_id, self._outage)

    def _over_rate(self, now: float, instance_id: str) -> bool:
        """Above the instance's 429 threshold (each instance has its own window)."""
        other = self.other_instances.get(instance_id)
        limit, burst = (
            (other.rate_limit, other.rate_burst) if other else (self.rate_limit, self.rate_burst)
        )
        if limit is None:
            return False
        with self._lock:
            recent = self._recent_by_instance.setdefault(instance_id, collections.deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= math.floor(limit) + burst:
                return True
            recent.append(now)
            return False

    def answer(self, request: ReceivedRequest) -> tuple[int, Any, dict[str, str]] | Fault:
        """Z-API's answer to ``request`` as (status, JSON body, headers), or a Fault to act out."""
        route = _ROUTE.match(request.path.split("?", 1)[0])
        if route is not None and route["endpoint"] == STATUS_ROUTE:
            return self._status(request, route)
        if route is None or route["endpoint"] not in ENDPOINTS:
            return 200, NOT_FOUND_BODY, {}
        if request.method != "POST":
            return 405, {"error": "Method Not Allowed"}, {}
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return 415, {"error": "Unsupported Media Type"}, {}
        refused = self._refusal(request, route)
        if refused is not None:
            return refused
        data = request.json
        if not isinstance(data, dict):
            return 400, {"error": "Invalid JSON body"}, {}
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            return 400, {"error": f"{missing[0]} is required"}, {}
        fault = self._next_fault(request.message_id, route["instance"])
        if fault is not None:
            return fault
        if self._over_rate(time.monotonic(), route["instance"]):
            return 429, {"error": "Too many requests"}, {"Retry-After": "1"}
        with self._lock:
            failing = self._random.random() < self.error_rate
            delay = self.latency + self._random.uniform(0, self.latency_jitter)
        if delay:
            time.sleep(delay)
        if failing:
            return 500, {"error": "Internal Server Error"}, {}
        message_id = secrets.token_hex(10).upper()
        reply = {"zaapId": secrets.token_hex(16).upper(), "messageId": message_id, "id": message_id}
        self._after_accept(data, reply)
        return 200, reply, {}

    def _refusal(
        self, request: ReceivedRequest, route: re.Match[str]
    ) -> tuple[int, Any, dict[str, str]] | None:
        """Z-API's answer to wrong credentials: a missing or wrong Client-Token, an unknown
        instance or token; None when they are right."""
        client_token = request.headers.get("client-token")
        if not client_token:
            return 400, {"error": "your client-token is not configured"}, {}
        other = self.other_instances.get(route["instance"])
        expected = (
            (other.client_token, other.instance_token)
            if other
            else (self.client_token, self.instance_token)
        )
        if client_token != expected[0]:
            return 403, {"error": f"Client-Token {client_token} not allowed"}, {}
        known = route["instance"] == self.instance_id or other is not None
        if not known or route["token"] != expected[1]:
            return 400, {"error": "Instance not found"}, {}
        return None

    def _status(
        self, request: ReceivedRequest, route: re.Match[str]
    ) -> tuple[int, Any, dict[str, str]] | Fault:
        """``GET .../status``: the instance's connection (an instance outage applies too)."""
        if request.method != "GET":
            return 405, {"error": "Method Not Allowed"}, {}
        refused = self._refusal(request, route)
        if refused is not None:
            return refused
        with self._lock:
            fault = self._instance_outages.get(route["instance"], self._outage)
            error = self._disconnected.get(route["instance"])
        if fault is not None:
            return fault
        if error is not None:
            return 200, {"connected": False, "error": error, "smartphoneConnected": False}, {}
        return 200, {"connected": True, "error": None, "smartphoneConnected": True}, {}

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The ``/__sim__/`` routes, for processes other than the one running the server."""
        if method == "GET" and path == "/__sim__/requests":
            return 200, [r.as_dict() for r in self.requests()]
        if method == "GET" and path == "/__sim__/stats":
            received = self.requests()
            times = [r.received_at for r in received]
            return 200, {
                "received": len(received),
                "accepted": sum(1 for r in received if r.status == 200),
                "distinct": len({r.message_id for r in received if r.status == 200}),
                "first": min(times, default=None),
                "last": max(times, default=None),
            }
        if method == "POST" and path == "/__sim__/reset":
            self.reset()
            return 200, {"ok": True}
        if method == "POST" and path == "/__sim__/config" and isinstance(body, dict):
            self.latency = float(body.get("latency", self.latency))
            if "rate_limit" in body:
                self.rate_limit = None if body["rate_limit"] is None else float(body["rate_limit"])
            self.rate_burst = int(body.get("rate_burst", self.rate_burst))
            if "webhook_url" in body:
                self.webhook_url = body["webhook_url"]
            self.delivery_failure_rate = float(
                body.get("delivery_failure_rate", self.delivery_failure_rate)
            )
            self.callbacks_before_reply = bool(
                body.get("callbacks_before_reply", self.callbacks_before_reply)
            )
            if "outage" in body:
                self.set_outage(None if body["outage"] is None else Fault(**body["outage"]))
            return 200, {"latency": self.latency, "rate_limit": self.rate_limit}
        if method == "POST" and path == "/__sim__/order":
            try:
                return 200, self.post_order(**(body or {}))
            except RuntimeError as exc:
                return 409, {"error": str(exc)}
        if method == "POST" and path == "/__sim__/connection" and isinstance(body, dict):
            self.set_connected(bool(body["connected"]), body.get("instance_id"))
            return 200, {"ok": True}
        if method == "POST" and path == "/__sim__/script" and isinstance(body, dict):
            self.script(str(body["messageId"]), *(Fault(**f) for f in body.get("faults", [])))
            return 200, {"ok": True}
        return 404, {"error": "unknown control route"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    simulator: ZapiSimulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    #: TCP_NODELAY, as Z-API's servers answer: the headers and the body are two writes, and
    #: with Nagle on, a keep-alive client would wait for its delayed ACK (~40 ms) on each answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the record of requests is the log, and paths carry the token."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        simulator = self.server.simulator
        if self.path.startswith("/__sim__/"):
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            status, payload = simulator.control(self.command, self.path, parsed)
            self._send(status, payload, {})
            return
        request = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            received_at=time.time(),
        )
        simulator._record(request)
        outcome = simulator.answer(request)
        if isinstance(outcome, Fault):
            if outcome.delay:
                time.sleep(outcome.delay)
            if outcome.drop:
                request.status = -1
                self.close_connection = True
                self.connection.close()
                return
            outcome = (outcome.status, outcome.body, outcome.headers)
        status, payload, headers = outcome
        request.status = status
        self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 - stdlib's names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run the fake Z-API on loopback. It accepts only its own credentials "
        "(403 otherwise, as Z-API): point a worker at it with ZAPI_BASE_URL and the three "
        "credentials it prints at start, by default ZAPI_INSTANCE_ID="
        f"{DEFAULT_INSTANCE_ID} ZAPI_INSTANCE_TOKEN={DEFAULT_INSTANCE_TOKEN} "
        f"ZAPI_CLIENT_TOKEN={DEFAULT_CLIENT_TOKEN}."
    )
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    default = SimulatorConfig()
    parser.add_argument(
        "--latency", type=float, default=default.latency, help="seconds per success"
    )
    parser.add_argument("--rate-limit", type=float, default=None, help="429 above this many/s")
    parser.add_argument(
        "--rate-burst", type=int, default=default.rate_burst, help="extra per second"
    )
    parser.add_argument(
        "--latency-jitter", type=float, default=default.latency_jitter, help="random extra s"
    )
    parser.add_argument(
        "--error-rate", type=float, default=default.error_rate, help="share answered 500"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random draws")
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("ZAPI_SIM_WEBHOOK_URL") or None,
        help="post Z-API's callbacks here (default: $ZAPI_SIM_WEBHOOK_URL)",
    )
    parser.add_argument(
        "--delivery-failure-rate", type=float, default=0.0, help="share of failed deliveries"
    )
    parser.add_argument(
        "--callbacks-before-reply", action="store_true", help="DeliveryCallback before the reply"
    )
    parser.add_argument(
        "--instance-id", default=default.instance_id, help=f"default {default.instance_id}"
    )
    parser.add_argument(
        "--instance-token", default=default.instance_token, help=f"default {default.instance_token}"
    )
    parser.add_argument(
        "--client-token", default=default.client_token, help=f"default {default.client_token}"
    )
    args = parser.parse_args(argv)
    options = {name: getattr(args, name) for name in SimulatorOptions.__annotations__}
    simulator = ZapiSimulator(host=args.host, port=args.port, **options)
    with simulator:
        print(f"fake Z-API listening on {simulator.base_url}; a worker needs:", flush=True)
        for line in simulator.worker_settings():
            print(f"  export {line}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
