"""What Z-API says of an instance: ``GET .../status`` (its connection) and ``GET .../me`` (its
settings, the webhook URLs among them), as FACTS.md and Z-API's instance docs describe them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """``connected``: the instance is connected to WhatsApp (sends go out now); when it is not,
    ``error`` says why ("You are not connected.", "You need to restore the session."...).
    ``smartphone_connected``: the phone itself is online (None when Z-API did not say)."""

    connected: bool
    error: str | None = None
    smartphone_connected: bool | None = None


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    """The webhook part of ``GET .../me``: where Z-API posts each callback type, and whether
    messages the number sends itself come back (``receiveCallbackSentByMe``).

    ``webhook_urls`` maps Z-API's field (``receivedCallbackUrl``, ``deliveryCallbackUrl``...) to
    its URL, None when unset. The URLs carry the webhook secret: mask them before showing
    (worker/webhook_url.py). The instance token Z-API also returns is not kept. A field Z-API
    left out is None (unknown), not False."""

    connected: bool | None = None
    notify_sent_by_me: bool | None = None
    webhook_urls: Mapping[str, str | None] = field(default_factory=dict)
