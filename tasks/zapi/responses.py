"""Reading Z-API's answer: success, permanent refusal, or a failure worth retrying.

Z-API's quirks drive the rules (see ``../shared/zapi-docs/FACTS.md``): a wrong route answers
HTTP 200 with ``{"error": "NOT_FOUND", ...}``, so a 200 is a success only when it carries both
``zaapId`` and ``messageId``; and a 403 body echoes the Client-Token, so error text is redacted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from tasks.backoff import parse_retry_after
from tasks.contract.errors import (
    TransientError,
    ZapiRateLimitedError,
    ZapiRejectedError,
    ZapiUnavailableError,
)
from tasks.contract.redaction import mask_digit_runs, redact
from tasks.contract.schemas import ZapiReply
from tasks.zapi.queue import QueuedMessage, QueuePage
from tasks.zapi.status import InstanceSettings, InstanceStatus

#: Statuses after which the same request may succeed later.
TRANSIENT_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))

_MAX_ERROR_TEXT = 500


def error_text(body: bytes, secrets: Iterable[str] = ()) -> str:
    """Z-API's error in one line: ``error`` and ``message`` of a JSON body, else the raw text;
    secrets redacted and a phone Z-API quotes masked (the text reaches logs, results, dead
    letters and the console)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data[key]) for key in ("error", "message") if data.get(key)]
        if parts:
            text = ": ".join(parts)
    text = " ".join(text.split()) or "(empty body)"
    if len(text) > _MAX_ERROR_TEXT:
        text = text[:_MAX_ERROR_TEXT] + "..."
    return mask_digit_runs(redact(text, secrets))


def interpret(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> ZapiReply:
    """Turn one HTTP answer into Z-API's reply, or raise the error that says what to do next."""
    secrets = tuple(secrets)
    if status == 200:
        return _success_or_hidden_error(body, secrets)
    raise _error_of(status, headers, body, secrets)


def interpret_status(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> InstanceStatus:
    """Turn the answer to ``GET .../status`` into the instance's status, or raise like
    :func:`interpret` (a 200 without a boolean ``connected`` is Z-API's hidden error)."""
    secrets = tuple(secrets)
    if status != 200:
        raise _error_of(status, headers, body, secrets)
    data = _json(body)
    if isinstance(data, dict) and isinstance(data.get("connected"), bool):
        error = data.get("error")
        phone = data.get("smartphoneConnected")
        return InstanceStatus(
            connected=data["connected"],
            error=redact(str(error), secrets)[:_MAX_ERROR_TEXT] if error else None,
            smartphone_connected=phone if isinstance(phone, bool) else None,
        )
    raise ZapiRejectedError(
        "Z-API answered HTTP 200 without a connected status: " + error_text(body, secrets),
        status_code=200,
    )


def interpret_value(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> None:
    """Check Z-API's answer to a settings update (``PUT .../update-every-webhooks`` and the
    like): only ``{"value": true}`` is done; ``{"value": false}`` or a 200 carrying an error
    (a wrong route, an HTTP URL refused) raises ZapiRejectedError, other statuses as in
    :func:`interpret`."""
    secrets = tuple(secrets)
    if status != 200:
        raise _error_of(status, headers, body, secrets)
    data = _json(body)
    if isinstance(data, dict) and data.get("value") is True:
        return
    raise ZapiRejectedError(
        'Z-API answered HTTP 200 without {"value": true}: ' + error_text(body, secrets),
        status_code=200,
    )


#: Fields of ``GET .../me`` that say the answer is the instance's data (Z-API's instance docs).
_INSTANCE_FIELDS = frozenset({"id", "connected", "receiveCallbackSentByMe"})
#: How ``GET .../me`` names each webhook URL: ``receivedCallbackUrl``, ``deliveryCallbackUrl``...
_CALLBACK_URL_SUFFIX = "CallbackUrl"


def interpret_instance_data(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> InstanceSettings:
    """Turn the answer to ``GET .../me`` into the instance's webhook settings, or raise like
    :func:`interpret` (a 200 with an ``error``, or with none of the instance's fields, is
    Z-API's hidden error)."""
    secrets = tuple(secrets)
    if status != 200:
        raise _error_of(status, headers, body, secrets)
    data = _json(body)
    if isinstance(data, dict) and not data.get("error"):
        urls = {
            name: value
            for name, value in sorted(data.items())
            if name.endswith(_CALLBACK_URL_SUFFIX) and (value is None or isinstance(value, str))
        }
        if urls or _INSTANCE_FIELDS & data.keys():
            connected, sent_by_me = data.get("connected"), data.get("receiveCallbackSentByMe")
            return InstanceSettings(
                connected=connected if isinstance(connected, bool) else None,
                notify_sent_by_me=sent_by_me if isinstance(sent_by_me, bool) else None,
                webhook_urls=urls,
            )
    raise ZapiRejectedError(
        "Z-API answered HTTP 200 without the instance's data: " + error_text(body, secrets),
        status_code=200,
    )


def interpret_queue_page(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> QueuePage:
    """Turn the answer to ``POST .../queue`` into a page of Z-API's queue, or raise like
    :func:`interpret`: a 200 that is no page (an ``error``, no ``messages`` list, no boolean
    ``hasMore``, more pages without a ``pagingState``) is a ZapiRejectedError naming what is
    wrong (by type, never by value: a page carries phones). An entry without a ``ZaapId`` is
    skipped and counted (QueuePage.skipped)."""
    secrets = tuple(secrets)
    if status != 200:
        raise _error_of(status, headers, body, secrets)
    data = _json(body)
    if isinstance(data, dict) and data.get("error"):
        raise ZapiRejectedError(
            "Z-API answered HTTP 200 without a queue page: " + error_text(body, secrets),
            status_code=200,
        )
    if not isinstance(data, dict):  # its text is not shown: it may be messages, with phones
        shown = type(data).__name__ if data is not None else "not JSON (or null)"
        raise _malformed_page(f"the answer is {shown}, not an object")
    messages, has_more, state = data.get("messages"), data.get("hasMore"), data.get("pagingState")
    if not isinstance(messages, list):
        raise _malformed_page(f"messages is {_kind(messages)}, not a list")
    if not isinstance(has_more, bool):
        raise _malformed_page(f"hasMore is {_kind(has_more)}, not a boolean")
    if state is not None and not isinstance(state, str):
        raise _malformed_page(f"pagingState is {_kind(state)}, not a string")
    if has_more and not state:
        raise _malformed_page("hasMore is true without a pagingState")
    found = [message for message in map(_queued_message, messages) if message is not None]
    return QueuePage(tuple(found), state or None, has_more, skipped=len(messages) - len(found))


def interpret_queue_delete(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> bool:
    """Whether ``DELETE .../queue/{zaapId}`` removed the message: True for Z-API's documented
    200 (``{"value": true}``, or no value at all), False when it says the message was not
    there (``{"value": false}``, or a 404); a 200 carrying an ``error`` (a wrong route) or
    anything else raises like :func:`interpret`."""
    secrets = tuple(secrets)
    if status == 404:
        return False
    if status != 200:
        raise _error_of(status, headers, body, secrets)
    data = {} if not body.strip() else _json(body)
    if isinstance(data, bool):
        return data
    if isinstance(data, dict) and not data.get("error"):
        value = data.get("value", True)
        if isinstance(value, bool):
            return value
    raise ZapiRejectedError(
        "Z-API answered HTTP 200 to the queue deletion without a value: "
        + error_text(body, secrets),
        status_code=200,
    )


def _queued_message(entry: Any) -> QueuedMessage | None:
    """One queue entry, None when it has no ``ZaapId`` (a string): nothing could delete it."""
    if not isinstance(entry, dict):
        return None
    zaap_id = entry.get("ZaapId")
    if not isinstance(zaap_id, str) or not zaap_id:
        return None
    message_id, phone, created = entry.get("MessageId"), entry.get("Phone"), entry.get("Created")
    if isinstance(phone, int) and not isinstance(phone, bool):
        phone = str(phone)
    return QueuedMessage(
        zaap_id=zaap_id,
        message_id=message_id if isinstance(message_id, str) else None,
        phone=phone if isinstance(phone, str) else None,
        created_at=_seconds_of_ms(created),
    )


def _seconds_of_ms(value: Any) -> float | None:
    """Epoch milliseconds as seconds; None for anything else (a bool, NaN, a number no float
    holds)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = value / 1000
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _malformed_page(problem: str) -> ZapiRejectedError:
    return ZapiRejectedError(f"Z-API's queue page is malformed: {problem}", status_code=200)


def _kind(value: Any) -> str:
    """What a field was, without its value (a page carries personal data)."""
    return "missing" if value is None else type(value).__name__


def _json(body: bytes) -> Any:
    """The body's JSON, or None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_of(
    status: int, headers: Mapping[str, str], body: bytes, secrets: tuple[str, ...]
) -> ZapiRejectedError | TransientError:
    """The error a non-200 answer means: retryable for TRANSIENT_STATUSES, else a refusal."""
    detail = error_text(body, secrets)
    if status in TRANSIENT_STATUSES:
        header = headers.get("retry-after")
        retry_after = parse_retry_after(header)
        wait = _retry_after_note(header, retry_after, secrets)
        if status == 429:
            return ZapiRateLimitedError(
                f"Z-API is rate limiting: HTTP 429: {detail}{wait}",
                status_code=status,
                retry_after=retry_after,
            )
        return ZapiUnavailableError(
            f"Z-API is unavailable: HTTP {status}: {detail}{wait}",
            status_code=status,
            retry_after=retry_after,
        )
    return ZapiRejectedError(
        f"Z-API refused the request: HTTP {status}: {detail}", status_code=status
    )


def _retry_after_note(header: str | None, seconds: float | None, secrets: tuple[str, ...]) -> str:
    """What Z-API asked for, as it will appear in the error: the wait, or a malformed value."""
    if header is None:
        return ""
    if seconds is None:
        shown = redact(" ".join(header.split())[:40], secrets)
        return f" (Retry-After {shown!r} ignored: not seconds nor an HTTP date)"
    return f" (Retry-After {seconds:g}s)"


def _success_or_hidden_error(body: bytes, secrets: tuple[str, ...]) -> ZapiReply:
    data = _json(body)
    if isinstance(data, dict):
        try:
            return ZapiReply.model_validate(data)
        except ValidationError:
            pass
    raise ZapiRejectedError(
        "Z-API answered HTTP 200 without zaapId and messageId: " + error_text(body, secrets),
        status_code=200,
    )
