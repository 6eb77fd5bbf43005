"""The fake Z-API in this process: a server thread, its set-up, and the controls tests call.

ZapiSimulator puts the parts together (the record of requests, the behaviour switches, the
webhooks, the routes) and is what tests hold: its set-up attributes (``latency``,
``rate_limit``, ``instance_token``...) can be changed while it runs, and the routes read them
at each request.
"""

from __future__ import annotations

import threading
from typing import Any, Unpack

from devtools.lifecycle import Managed
from devtools.zapi_callbacks import PostedCallback
from devtools.zapi_sim import control as control_routes
from devtools.zapi_sim import routes
from devtools.zapi_sim.config import OtherInstance, SimulatorConfig, SimulatorOptions
from devtools.zapi_sim.outbox import Fired, Outbox, Send
from devtools.zapi_sim.records import Received, ReceivedRequest
from devtools.zapi_sim.routes.common import Answer
from devtools.zapi_sim.routes.instance_settings import WebhookSettings
from devtools.zapi_sim.server import SimServer
from devtools.zapi_sim.switches import NOT_CONNECTED, Fault, Switches
from devtools.zapi_sim.webhooks import Webhooks


class ZapiSimulator(SimulatorConfig, Managed):
    """The fake Z-API server; use as a context manager or call start() and stop()."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, **options: Unpack[SimulatorOptions]
    ) -> None:
        SimulatorConfig.__init__(self, **options)
        #: More instances it serves (instance id -> credentials and 429 threshold), for tests.
        self.other_instances: dict[str, OtherInstance] = {}
        self.received = Received()
        self.switches = Switches(self.seed)
        self.webhooks = Webhooks(self, self.switches)
        #: Each instance's queue of sends for a disconnected phone, and what reached the phone.
        self.outbox = Outbox(self, self.switches)
        #: What each instance was told by ``update-every-webhooks`` and the like.
        self.instance_settings = WebhookSettings()
        self._server = SimServer((host, port), self)
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
        self.outbox.close()
        self.webhooks.close()

    # -- control -------------------------------------------------------------------------------
    def script(self, message_id: str, *faults: Fault) -> None:
        """The next requests whose body has this ``messageId`` get these faults, in order."""
        self.switches.script(message_id, *faults)

    def set_outage(self, fault: Fault | None, instance_id: str | None = None) -> None:
        """Answer every valid request (of ``instance_id`` only, if given) with ``fault`` until
        called again with None."""
        self.switches.set_outage(fault, instance_id)

    def set_connected(
        self, connected: bool, instance_id: str | None = None, error: str = NOT_CONNECTED
    ) -> None:
        """What ``GET .../status`` says of ``instance_id`` (default: the main instance) from
        now on. While disconnected, sends are still accepted but wait in the instance's queue,
        as Z-API queues them; connecting fires the queue, ``queue_spacing`` seconds apart."""
        self.outbox.set_connected(instance_id or self.instance_id, connected, error)

    def queued(self, instance_id: str | None = None) -> list[Send]:
        """The sends waiting in ``instance_id``'s queue (default: the main instance's), in the
        order they will fire."""
        return [q.send for q in self.outbox.queued(instance_id or self.instance_id)]

    def fired(self, instance_id: str | None = None) -> list[Fired]:
        """Every message delivered to the phone (of ``instance_id`` only, if given) in firing
        order: sent at once, or fired from a queue; with or without a webhook URL."""
        return self.outbox.fired(instance_id)

    def status_polls(self) -> list[ReceivedRequest]:
        """The ``GET .../status`` requests received so far."""
        return self.received.status_polls()

    def queue_calls(self) -> list[ReceivedRequest]:
        """The requests to the instances' queues (``POST .../queue``, ``DELETE .../queue``...)
        received so far."""
        return self.received.queue_calls()

    def requests(self, message_id: str | None = None) -> list[ReceivedRequest]:
        """What was received so far, optionally only requests for one ``messageId``."""
        return self.received.requests(message_id)

    def webhook_settings(self, instance_id: str | None = None) -> dict[str, Any] | None:
        """``{"value": URL, "notifySentByMe": bool}`` as ``instance_id`` (default: the main
        instance) was last told, None if it never was."""
        return self.instance_settings.of(instance_id or self.instance_id)

    def post_order(self, **options: Any) -> dict[str, Any]:
        """Post a ``ReceivedCallback`` with a new order to the webhook URL (options: see
        ``zapi_callbacks.order_message``); returns the payload posted."""
        return self.webhooks.post_order(**options)

    def callbacks(self) -> list[PostedCallback]:
        """The callbacks posted so far, with the receiver's answers."""
        return self.webhooks.posted()

    def drain_callbacks(self, timeout: float = 10.0) -> None:
        """Wait until every callback due was posted."""
        self.webhooks.drain(timeout)

    def reset(self) -> None:
        """Forget what was received, queued, fired and posted and the instances' webhook
        settings; every switch back to normal."""
        self.outbox.reset()
        self.webhooks.reset()
        self.received.reset()
        self.switches.reset()
        self.instance_settings.reset()

    # -- requests ------------------------------------------------------------------------------
    def receive(self, request: ReceivedRequest) -> Answer | Fault:
        """Record ``request`` (before answering it: a slow answer's request is seen at once),
        then answer it."""
        self.received.add(
            request,
            status_poll=routes.is_status_poll(request),
            queue_call=routes.is_queue_call(request),
        )
        return self.answer(request)

    def answer(self, request: ReceivedRequest) -> Answer | Fault:
        """Z-API's answer to ``request`` as (status, JSON body, headers), or a Fault to act out."""
        return routes.answer(self, request)

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The ``/__sim__/`` routes, for processes other than the one running the server."""
        return control_routes.control(self, method, path, body)
