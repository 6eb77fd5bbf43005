"""Removing secrets from text before it reaches a log line, an exception or Redis.

The instance token travels in the URL path and the Client-Token in a header; Z-API even
echoes a wrong Client-Token in its 403 body. Anything that may carry them goes through
:func:`redact` first, and :class:`RedactingFilter` scrubs every log record as a last line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@")
_URL_TOKEN = re.compile(r"(/token/)[^/\s?#\"']+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` without the given secrets, URL passwords or ``/token/<value>`` segments."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    return _URL_TOKEN.sub(rf"\g<1>{MASK}", text)


def mask_phone(phone: Any) -> str:
    """``5511999991234`` -> ``55119*****234``: enough to tell numbers apart, not to dial them."""
    text = str(phone) if phone is not None else "?"
    if len(text) < 8:
        return "*" * len(text)
    return text[:5] + "*" * (len(text) - 8) + text[-3:]


def describe_body(body: Any) -> str:
    """A short, phone-masked summary of a job's body, for Flower and logs (``argsrepr``)."""
    if not isinstance(body, dict):
        return f"[<{type(body).__name__}>]"
    parts = [f"'phone': {mask_phone(body.get('phone'))!r}"]
    for name in ("messageId", "orderStatus", "paymentStatus"):
        if name in body:
            parts.append(f"{name!r}: {str(body[name])[:64]!r}")
    return "[{" + ", ".join(parts) + ", ...}]"


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's final message without secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted tracebacks are cached on the record; pre-format and scrub them.
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        return True
