"""The instance's webhook settings: ``PUT update-every-webhooks``, ``PUT
update-notify-sent-by-me`` and ``GET me`` (what ``zapi-queue webhooks`` calls).

Z-API's docs: both updates answer ``{"value": bool}`` and Z-API refuses a webhook URL that is
not HTTPS; how it refuses is not documented, so the fake answers a 200 carrying an error (the
harder case for a client, FACTS.md: a 200 can carry an error). ``me`` returns the instance's
data, the instance token and the webhook URLs among it. The fake remembers what each instance
was given (:meth:`ZapiSimulator.webhook_settings`, ``GET /__sim__/webhooks``) but posts its
own callbacks to its ``webhook_url`` still: a URL Z-API accepts is HTTPS, which the loopback
receivers of tests and the demo are not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.routes.common import (
    Answer,
    Route,
    RouteAnswer,
    instance_read,
    json_request,
)
from devtools.zapi_sim.switches import Fault

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator

#: How ``GET .../me`` names the URLs ``update-every-webhooks`` sets (Z-API's instance docs).
CALLBACK_FIELDS = (
    "connectedCallbackUrl",
    "deliveryCallbackUrl",
    "disconnectedCallbackUrl",
    "messageStatusCallbackUrl",
    "presenceChatCallbackUrl",
    "receivedCallbackUrl",
)
NOT_HTTPS = "Only HTTPS webhook URLs are accepted"


class WebhookSettings:
    """What each instance was told: its webhook URL and ``notifySentByMe`` (off until set)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, dict[str, Any]] = {}

    def update(self, instance_id: str, **changes: Any) -> None:
        """Set ``value`` (the URL) and/or ``notifySentByMe`` of an instance."""
        with self._lock:
            current = self._settings.setdefault(
                instance_id, {"value": None, "notifySentByMe": False}
            )
            current.update(changes)

    def of(self, instance_id: str) -> dict[str, Any] | None:
        """``{"value": URL, "notifySentByMe": bool}``, None for an instance never configured."""
        with self._lock:
            current = self._settings.get(instance_id)
            return dict(current) if current is not None else None

    def every(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {instance: dict(current) for instance, current in self._settings.items()}

    def reset(self) -> None:
        with self._lock:
            self._settings.clear()


def every_webhook(data: dict[str, Any]) -> dict[str, Any] | Answer:
    """``{"value": URL, "notifySentByMe"?: bool}``: every webhook URL at once."""
    url, notify = data.get("value"), data.get("notifySentByMe")
    if not isinstance(url, str) or not url:
        return 400, {"error": "value is required"}, {}
    if notify is not None and not isinstance(notify, bool):
        return 400, {"error": "notifySentByMe must be a boolean"}, {}
    if urlsplit(url).scheme.lower() != "https":
        return 200, {"error": NOT_HTTPS}, {}
    return {"value": url} if notify is None else {"value": url, "notifySentByMe": notify}


def notify_sent_by_me(data: dict[str, Any]) -> dict[str, Any] | Answer:
    """``{"notifySentByMe": bool}``: whether the number's own messages come back."""
    notify = data.get("notifySentByMe")
    if not isinstance(notify, bool):
        return 400, {"error": "notifySentByMe is required (a boolean)"}, {}
    return {"notifySentByMe": notify}


def settings_update(changes_of: Callable[[dict[str, Any]], dict[str, Any] | Answer]) -> RouteAnswer:
    """The route of one settings update: Z-API's checks (PUT, JSON, credentials), the body
    read by ``changes_of`` (the changes, or Z-API's refusal), an outage, then the change
    remembered and ``{"value": true}``."""

    def answer(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | Fault:
        data = json_request(sim, request, route, method="PUT")
        if not isinstance(data, dict):
            return data
        changes = changes_of(data)
        if not isinstance(changes, dict):
            return changes
        fault = sim.switches.next_fault(None, route.instance)
        if fault is not None:
            return fault
        sim.instance_settings.update(route.instance, **changes)
        return 200, {"value": True}, {}

    return answer


def me(sim: ZapiSimulator, request: ReceivedRequest, route: Route) -> Answer | Fault:
    """The instance's data as Z-API's ``GET .../me`` gives it, its token included."""
    refused, disconnected = instance_read(sim, request, route)
    if refused is not None:
        return refused
    current = sim.instance_settings.of(route.instance) or {}
    data: dict[str, Any] = {
        "id": route.instance,
        "token": route.token,
        "name": f"fake {route.instance}",
        "connected": disconnected is None,
        "paymentStatus": "paid",
        "receiveCallbackSentByMe": bool(current.get("notifySentByMe")),
    }
    data.update(dict.fromkeys(CALLBACK_FIELDS, current.get("value")))
    return 200, data, {}


#: The routes of this family, by their path's last part.
ROUTES: dict[str, RouteAnswer] = {
    "update-every-webhooks": settings_update(every_webhook),
    "update-notify-sent-by-me": settings_update(notify_sent_by_me),
    "me": me,
}
