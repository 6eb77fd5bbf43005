"""Z-API's own queue as the client reads it (FACTS.md, "Z-API's own queue").

While a phone is disconnected Z-API keeps our sends in the instance's queue and fires them all
on reconnect; issue #30's reconciliation pages through it (``POST .../queue``) to find our
messages by their ``zaapId`` and deletes the stale ones (``DELETE .../queue/{zaapId}``). These
are the few fields it needs of a page, read defensively: the answer comes from outside, and a
page we cannot trust must stop the reconciliation rather than delete the wrong message.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Z-API's largest page (its default is 20).
MAX_PAGE_SIZE = 30


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message in Z-API's queue: ``zaap_id`` (what a job recorded of its send, and what
    deletes it), ``message_id``, ``phone`` (personal data: mask it before showing) and
    ``created_at`` (epoch seconds, from Z-API's ``Created`` in ms); the last three None when
    Z-API left them out or sent something else."""

    zaap_id: str
    message_id: str | None = None
    phone: str | None = None
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class QueuePage:
    """A page of Z-API's queue in firing order. ``paging_state`` asks for the next page (None
    on the last one); ``has_more`` says there is one. ``skipped``: entries of the page that were
    no message with a ``ZaapId`` (nothing could delete them), so a reconciliation can say it
    saw them."""

    messages: tuple[QueuedMessage, ...]
    paging_state: str | None
    has_more: bool
    skipped: int = 0
