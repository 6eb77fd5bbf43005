"""Removing secrets from text before it reaches a log line, an exception or Redis, and personal
data from the bodies people read.

The instance token travels in the URL path and the Client-Token in a header; Z-API even
echoes a wrong Client-Token in its 403 body. Anything that may carry them goes through
:func:`redact` first, and :class:`RedactingFilter` scrubs every log record as a last line.

A body's personal data is the customer's phone and, in a send-order body, the shop's PIX key
(``paymentSettings.pix.key``: a CPF, a phone, an e-mail or a random key). A summary of a body
(:func:`summarize_body`: logs, Flower, ``inspect``) shows the phone masked and never the key;
a body shown whole (:func:`masked_body`: dead letters) has both masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

#: A URL's userinfo runs to the LAST ``@`` before the next whitespace, as redis-py reads it
#: (``redis://:s3cr@t@host`` logs in with ``s3cr@t``): a password may hold ``@``, ``:``, ``/``
#: or ``%``. Greedy on purpose: a later ``@`` in the same word masks more text, never less.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>\S*)@")
_URL_TOKEN = re.compile(r"(/token/)[^/\s?#\"']+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` without the given secrets, URL passwords or ``/token/<value>`` segments."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(_masked_userinfo, text)
    return _URL_TOKEN.sub(rf"\g<1>{MASK}", text)


def _masked_userinfo(match: re.Match[str]) -> str:
    """``scheme://user:***@``: the user name kept (up to the first ``:``), the rest masked; a
    userinfo without ``:`` is a user name alone, kept."""
    user, colon, _ = match["info"].partition(":")
    if not colon:
        return match[0]
    return f"{match['scheme']}{user}:{MASK}@"


def mask_phone(phone: Any) -> str:
    """``5511999991234`` -> ``55119*****234``: enough to tell numbers apart, not to dial them."""
    text = str(phone) if phone is not None else "?"
    if len(text) < 8:
        return "*" * len(text)
    return text[:5] + "*" * (len(text) - 8) + text[-3:]


#: Fields of a body shown to operators (Flower, ``inspect``, logs): the order it names and the
#: statuses it sets. Each value is cut to ``_SHOWN_LENGTH`` characters, runs of digits masked.
_SHOWN_FIELDS = ("orderRequestId", "messageId", "orderKey", "orderStatus", "paymentStatus")
_SHOWN_LENGTH = 64
#: 8 or more digits, alone or written as people write phones (``+55 (11) 98765-4321``).
_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[ ().-]{0,2}\d){7,}")


def shown_text(value: Any, limit: int = _SHOWN_LENGTH) -> str:
    """``value`` as operators may read it: a string cut to ``limit`` characters with every run of
    8 or more digits masked (a phone hidden in an id), anything else as its type's name."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    return mask_digit_runs(value[:limit])


def mask_digit_runs(text: str) -> str:
    """``text`` with every run of 8 or more digits masked: a phone quoted in an error message."""
    return _DIGIT_RUN.sub(lambda run: _masked_phone(run.group()), text)


def _masked_phone(phone: Any) -> str:
    """:func:`mask_phone`, but a number shorter than 12 characters shows none of it (the 5 + 3
    characters mask_phone keeps would be most of an 8 to 11 digit number)."""
    if not isinstance(phone, str):
        return f"<{type(phone).__name__}>"
    return mask_phone(phone) if len(phone) >= 12 else "*" * len(phone)


def summarize_body(body: Any) -> str:
    """One body as operators see it: ``{'phone': '55449****999', 'orderRequestId': ...,
    'orderStatus': ...}``. A short update names no phone and shows none; a body that is not a
    dict shows its type only; the message text and the order's items are never shown."""
    if not isinstance(body, dict):
        return f"<{type(body).__name__}>"
    parts = []
    if "phone" in body:
        parts.append(f"'phone': {_masked_phone(body['phone'])!r}")
    for name in _SHOWN_FIELDS:
        if name in body:
            parts.append(f"{name!r}: {shown_text(body[name])!r}")
    return "{" + ", ".join(parts) + "}"


def pix_key_of(body: Any) -> Any:
    """The PIX key a raw body carries (``paymentSettings.pix.key``), valid or not; None when it
    has none."""
    settings = body.get("paymentSettings") if isinstance(body, dict) else None
    pix = settings.get("pix") if isinstance(settings, dict) else None
    return pix.get("key") if isinstance(pix, dict) else None


def mask_pix_key(key: Any) -> str:
    """A PIX key as people may see it: a key of 12 characters or more keeps its first and last
    two (enough to tell the shop's keys apart), a shorter one (a CPF) shows none; at most
    :data:`_SHOWN_LENGTH` characters in all, whatever the key's length."""
    if not isinstance(key, str):
        return f"<{type(key).__name__}>"
    if len(key) < 12:
        return "*" * len(key)
    return key[:2] + "*" * min(len(key) - 4, _SHOWN_LENGTH - 4) + key[-2:]


def masked_body(body: Any, *, show_phone: bool = False) -> Any:
    """``body`` to be shown whole (a dead letter): a copy with its phone masked (unless
    ``show_phone``) and its PIX key masked; anything but a dict as it is."""
    if not isinstance(body, dict):
        return body
    shown = dict(body)
    if not show_phone and "phone" in shown:
        shown["phone"] = mask_phone(shown["phone"])
    if pix_key_of(body) is not None:
        settings = shown["paymentSettings"]
        pix = {**settings["pix"], "key": mask_pix_key(settings["pix"]["key"])}
        shown["paymentSettings"] = {**settings, "pix": pix}
    return shown


def describe_body(body: Any) -> str:
    """A job's ``argsrepr`` when its one positional argument is ``body``: ``[{...}]``."""
    return f"[{summarize_body(body)}]"


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
