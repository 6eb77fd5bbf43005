"""The fake Z-API's side of the webhooks: when it posts which callback, to its ``webhook_url``.

The callbacks' shapes and the thread that posts them are devtools/zapi_callbacks.py; this module
decides what an event sends: a send reaching the phone (at once, or fired from the instance's
queue: devtools/zapi_sim/outbox.py) its DeliveryCallback (failing for a
``delivery_failure_rate`` share) and, when delivered, MessageStatusCallback SENT, RECEIVED, READ;
a sent order message, when delivered and the instance has ``notifySentByMe`` on, first the
fromMe ReceivedCallback that carries its ids (``order_callback``: after the reply, before it,
never); a new order its ReceivedCallback. It reads the set-up live, as tests change it on a
running fake.
"""

from __future__ import annotations

from typing import Any

from devtools.zapi_callbacks import (
    CallbackPoster,
    PostedCallback,
    delivery_callback,
    order_message,
    sent_order_message,
    status_callback,
)
from devtools.zapi_sim.config import SimulatorConfig
from devtools.zapi_sim.switches import Switches


class Webhooks:
    """Posts the fake's callbacks and keeps what the receiver answered."""

    def __init__(self, config: SimulatorConfig, switches: Switches) -> None:
        self._config = config
        self._switches = switches
        self._poster = CallbackPoster()

    def after_accept(
        self,
        data: dict[str, Any],
        reply: dict[str, str],
        instance_id: str | None = None,
        echo: dict[str, Any] | None = None,
    ) -> None:
        """Play Z-API's callbacks for a send of ``instance_id`` (default: the main instance) as
        it reaches the phone; ``echo``, the ReceivedCallback of a sent order message, goes first
        unless the delivery fails (no message, no order)."""
        config = self._config
        url = config.webhook_url
        if url is None:
            return
        failure = self._switches.draw_failure(config.delivery_failure_rate, 1000)
        if echo is not None and failure is None:
            if config.order_callback == "before":
                self._poster.post_now(url, echo)
            else:
                self._poster.post_later(
                    url, echo, config.callback_delay + config.order_callback_delay
                )
        phone = str(data.get("phone", ""))
        message_id, zaap_id = reply["messageId"], reply["zaapId"]
        instance_id = instance_id or config.instance_id
        delivery = delivery_callback(instance_id, message_id, zaap_id, phone, failure=failure)
        if config.callbacks_before_reply:
            self._poster.post_now(url, delivery)
        else:
            self._poster.post_later(url, delivery, config.callback_delay)
        if failure is None:
            for status in ("SENT", "RECEIVED", "READ"):
                payload = status_callback(instance_id, message_id, phone, status)
                self._poster.post_later(url, payload, config.callback_delay)

    def after_order_sent(
        self,
        instance_id: str,
        body: dict[str, Any],
        reply: dict[str, str],
        *,
        notify_sent_by_me: bool,
    ) -> None:
        """Play Z-API's callbacks for an accepted send-order ``body`` (valid, Z-API's
        spelling): those of any send, and its order's ReceivedCallback when the instance has
        ``notifySentByMe`` on and ``order_callback`` is not ``never``."""
        posts_echo = notify_sent_by_me and self._config.order_callback != "never"
        echo = sent_order_message(instance_id, body, reply["messageId"]) if posts_echo else None
        self.after_accept(body, reply, instance_id, echo)

    def post_order(self, **options: Any) -> dict[str, Any]:
        """Post a ``ReceivedCallback`` with a new order to the webhook URL (options: see
        ``zapi_callbacks.order_message``); returns the payload posted."""
        url = self._config.webhook_url
        if url is None:
            raise RuntimeError("the fake Z-API has no webhook_url to post the order to")
        payload = order_message(self._config.instance_id, **options)
        status = self._poster.post_now(url, payload)
        if status != 200:
            raise RuntimeError(f"the webhook answered {status} to the order message")
        return payload

    def posted(self) -> list[PostedCallback]:
        """The callbacks posted so far, with the receiver's answers."""
        return self._poster.posted()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every callback due was posted."""
        self._poster.drain(timeout)

    def reset(self) -> None:
        self._poster.reset()

    def close(self) -> None:
        self._poster.close()
