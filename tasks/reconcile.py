"""Reconciling Z-API's own queue: while a phone is disconnected, take out of it our messages
that would reach the customer as old news.

Z-API accepts sends for a disconnected phone into its queue and fires them all, in order, the
moment the phone reconnects (FACTS.md). Everything we sent before we knew of the disconnection
sits there. A pass (one worker of the fleet at a time: worker/queue_reconciler.py) pages
through the queue (at most ``ZAPI_QUEUE_PAGES``), finds our messages by their delivery records
(tasks/state/zapi_queue.py), and deletes (``DELETE .../queue/{zaapId}``) each one that

* a later update of the same order and field **supersedes**, when superseding applies to it
  (its ``supersede`` kwarg, else ``ZAPI_SUPERSEDE``; never a ``force`` job): the later update
  is in the queue behind it or still waiting in the order's line on our side, and passes the
  same rule as superseding in the line (tasks/contract/ordering.py ``superseder``);
* is **stale**, always: the order already showed the customer a state it would move back from,
  through a message that is not in the queue (it went around it). Judged only on a complete
  listing: on a partial one the newer message may be on a page not read.

A deleted message's delivery record becomes ``withdrawn`` (by the newer job, and why); the rest
fire as Z-API sends them. The order message (send-order) is never withdrawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.contract.errors import ZapiQueueError
from tasks.contract.ordering import (
    order_status_moves_back,
    payment_status_moves_back,
    superseder,
)
from tasks.state.deliveries import DeliveryBook
from tasks.state.zapi_queue import LineView, Queued, ZapiQueueBook
from tasks.zapi.client import ZapiClient
from tasks.zapi.queue import MAX_PAGE_SIZE, QueuedMessage

STALE, SUPERSEDED = "stale", "superseded"
_MOVES_BACK = {"orderStatus": order_status_moves_back, "paymentStatus": payment_status_moves_back}


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A queued message of ours to delete: made unnecessary by job ``by`` for ``reason``."""

    queued: Queued
    by: str
    reason: str


@dataclass
class Reconciliation:
    """What one pass saw and did."""

    total: int = 0
    ours: int = 0
    partial: bool = False
    withdrawn: dict[str, int] = field(default_factory=lambda: {STALE: 0, SUPERSEDED: 0})
    #: Deletions Z-API refused as not there (fired meanwhile), or that failed.
    missed: int = 0

    def describe(self) -> str:
        taken = sum(self.withdrawn.values())
        line = (
            f"{self.total} messages in Z-API's queue, {self.ours} ours; withdrew {taken} "
            f"({self.withdrawn[SUPERSEDED]} superseded, {self.withdrawn[STALE]} stale)"
        )
        if self.missed:
            line += f", {self.missed} not withdrawn (fired meanwhile, or Z-API refused)"
        if self.partial:
            line += "; PARTIAL: the queue is longer than ZAPI_QUEUE_PAGES pages"
        return line


def plan(
    ours: list[Queued], lines: dict[str, LineView], *, supersede: bool, complete: bool
) -> list[Withdrawal]:
    """The messages to withdraw (pure: the pass's decision, tested apart). ``ours`` in the
    queue's order; ``lines``: their orders' lines; ``supersede``: ZAPI_SUPERSEDE."""
    queued_jobs = {q.job for q in ours}
    withdrawals = []
    for i, queued in enumerate(ours):
        if queued.field is None or queued.state is None or queued.line is None:
            continue
        view = lines.get(queued.line)
        if view is None:
            continue
        later_queued = [
            (q.job, q.state)
            for q in ours[i + 1 :]
            if q.line == queued.line and q.field == queued.field and q.state is not None
        ]
        waiting = [(w.job, w.state) for w in view.waiting if w.field == queued.field and w.fresh]
        later = later_queued + waiting
        may = (supersede if queued.supersede is None else queued.supersede) and not queued.force
        found = superseder(queued.field, queued.state, [s for _, s in later]) if may else None
        if found is not None:
            withdrawals.append(Withdrawal(queued, later[found][0], SUPERSEDED))
            continue
        shown = view.shown.get(queued.field)
        around = view.shown_by is not None and view.shown_by not in queued_jobs
        if complete and shown and around and _MOVES_BACK[queued.field](shown, queued.state):
            withdrawals.append(Withdrawal(queued, str(view.shown_by), STALE))
    return withdrawals


def read_queue(client: ZapiClient, pages: int) -> tuple[list[QueuedMessage], bool]:
    """The instance's queue at Z-API in firing order, at most ``pages`` pages; and whether it
    was read whole."""
    messages: list[QueuedMessage] = []
    paging: str | None = None
    for _ in range(pages):
        page = client.queue_page(MAX_PAGE_SIZE, paging)
        messages.extend(page.messages)
        if not page.has_more or page.paging_state is None:
            return messages, True
        paging = page.paging_state
    return messages, False


def reconcile(
    client: ZapiClient,
    book: ZapiQueueBook,
    deliveries: DeliveryBook,
    *,
    pages: int,
    supersede: bool,
) -> Reconciliation:
    """One pass over the instance's queue at Z-API. Raises ZapiQueueError when Z-API cannot
    be read (nothing is deleted then); a deletion that fails is counted, not raised."""
    messages, complete = read_queue(client, pages)
    ours = book.ours(messages)
    lines = book.lines({q.line for q in ours if q.line is not None})
    done = Reconciliation(total=len(messages), ours=len(ours), partial=not complete)
    for withdrawal in plan(ours, lines, supersede=supersede, complete=complete):
        if not _delete(client, withdrawal.queued.message.zaap_id):
            done.missed += 1
            continue
        message_id = str(withdrawal.queued.message.message_id)
        deliveries.withdraw(message_id, by=withdrawal.by, reason=withdrawal.reason)
        done.withdrawn[withdrawal.reason] += 1
    return done


def _delete(client: ZapiClient, zaap_id: str) -> bool:
    try:
        return client.delete_queued(zaap_id)
    except ZapiQueueError:
        return False
