"""What ``GET /instances/{id}/token/{token}/status`` says of an instance (FACTS.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """``connected``: the instance is connected to WhatsApp (sends go out now); when it is not,
    ``error`` says why ("You are not connected.", "You need to restore the session."...).
    ``smartphone_connected``: the phone itself is online (None when Z-API did not say)."""

    connected: bool
    error: str | None = None
    smartphone_connected: bool | None = None
