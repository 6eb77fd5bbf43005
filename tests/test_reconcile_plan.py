"""What a pass over Z-API's queue withdraws (tasks/reconcile.py ``plan``), as pure logic: which
of our queued messages a later update supersedes or makes stale, and which it never touches.

The pass against the fake Z-API through real workers is tests/test_reconcile_e2e.py.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tasks.contract.ordering import ShopOrderKey, order_status_moves_back
from tasks.reconcile import STALE, SUPERSEDED, plan
from tasks.state.zapi_queue import LineView, Queued, Waiting
from tasks.zapi.queue import QueuedMessage

ORDER = "4N8ORDER"
STATUSES = ("pending", "processing", "shipped", "completed", "canceled")


def queued(
    job: str,
    state: str | None,
    *,
    field: str | None = "orderStatus",
    line: str | None = ORDER,
    supersede: bool | None = None,
    force: bool = False,
) -> Queued:
    message = QueuedMessage(zaap_id=f"Z-{job}", message_id=f"M-{job}")
    return Queued(message, job, line, field if state else None, state, supersede, force)


def view(shown: dict[str, str] | None = None, by: str | None = None, *waiting: Waiting) -> LineView:
    return LineView(shown or {}, by, waiting)


def test_with_superseding_on_the_older_queued_ones_give_way_to_a_held_update() -> None:
    ours = [queued("a", "processing"), queued("b", "shipped")]
    lines = {
        ORDER: view({"orderStatus": "shipped"}, "b", Waiting("c", "orderStatus", "completed", True))
    }
    withdrawn = plan(ours, lines, supersede=True, complete=True)
    assert [(w.queued.job, w.by, w.reason) for w in withdrawn] == [
        ("a", "c", SUPERSEDED),
        ("b", "c", SUPERSEDED),
    ]


def test_with_superseding_off_nothing_in_order_is_withdrawn() -> None:
    ours = [queued("a", "processing"), queued("b", "shipped")]
    lines = {
        ORDER: view({"orderStatus": "shipped"}, "b", Waiting("c", "orderStatus", "completed", True))
    }
    assert plan(ours, lines, supersede=False, complete=True) == []


def test_a_queued_update_the_order_went_past_around_the_queue_is_stale() -> None:
    ours = [queued("a", "processing")]
    lines = {ORDER: view({"orderStatus": "completed"}, "x")}  # x's message is not queued
    withdrawn = plan(ours, lines, supersede=False, complete=True)
    assert [(w.queued.job, w.by, w.reason) for w in withdrawn] == [("a", "x", STALE)]
    # On a partial listing x may be queued on a page not read: nothing is judged stale.
    assert plan(ours, lines, supersede=False, complete=False) == []


def test_payment_and_status_do_not_supersede_each_other() -> None:
    ours = [queued("a", "shipped")]
    lines = {ORDER: view({}, None, Waiting("p", "paymentStatus", "paid", True))}
    assert plan(ours, lines, supersede=True, complete=True) == []


def test_force_jobs_order_messages_and_lost_jobs_are_left_alone() -> None:
    later = Waiting("c", "orderStatus", "completed", True)
    ours = [
        queued("f", "processing", force=True),
        queued("o", None, field=None),  # the order message
        queued("k", "processing", supersede=False),
    ]
    assert plan(ours, {ORDER: view({}, None, later)}, supersede=True, complete=True) == []
    lost = Waiting("c", "orderStatus", "completed", False)
    assert (
        plan(
            [queued("a", "processing")],
            {ORDER: view({}, None, lost)},
            supersede=True,
            complete=True,
        )
        == []
    )


def test_a_keyed_order_is_matched_by_its_own_line() -> None:
    key = ShopOrderKey("shop-1042")
    ours = [queued("a", "processing", line=key)]
    lines: dict[str, LineView] = {key: view({}, None, Waiting("c", "orderStatus", "shipped", True))}
    assert [w.by for w in plan(ours, lines, supersede=True, complete=True)] == ["c"]


def forward_end(states: list[str]) -> str | None:
    """Where an order ends when each state is sent in turn and the line refuses going back."""
    shown: str | None = None
    for state in states:
        if shown is None or not order_status_moves_back(shown, state):
            shown = state
    return shown


@given(
    st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6),
    st.lists(st.sampled_from(STATUSES), max_size=3),
    st.booleans(),
)
def test_withdrawing_never_changes_where_the_order_ends(
    in_queue: list[str], held: list[str], supersede: bool
) -> None:
    """Any queue of one order's status updates (in line order, so never going back) and any
    updates held behind them: what is left fires, then the held ones go, and the order ends
    where it would have with nothing withdrawn."""
    sent: list[str] = []
    for state in in_queue:  # what the line let through into Z-API's queue
        if not sent or not order_status_moves_back(sent[-1], state):
            sent.append(state)
    ours = [queued(f"q{i}", state) for i, state in enumerate(sent)]
    waiting = tuple(Waiting(f"h{i}", "orderStatus", state, True) for i, state in enumerate(held))
    lines = {ORDER: view({"orderStatus": sent[-1]}, ours[-1].job, *waiting)}
    withdrawn = {w.queued.job for w in plan(ours, lines, supersede=supersede, complete=True)}
    left = [q.state for q in ours if q.job not in withdrawn and q.state is not None]
    assert forward_end(left + held) == forward_end(sent + held)
    if not supersede:
        assert withdrawn == set()
