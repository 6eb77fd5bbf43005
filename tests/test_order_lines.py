"""Orders' lines and states (tasks/state/orders.py) against a real Redis."""

from __future__ import annotations

import itertools
import time

import redis

from tasks.state.orders import OrderLines, Turn
from tests.conftest import empty_db_fixture

_instances = itertools.count()


client = empty_db_fixture(9)


def make_book(client: redis.Redis, *, absence: float = 600, settle: float = 0.0) -> OrderLines:
    return OrderLines(
        client, instance_id=f"book-{next(_instances)}", ttl=3600, absence=absence, settle=settle
    )


def enter(book: OrderLines, job: str, sequence: int | None = None, **options: bool) -> object:
    entry = book.enter(
        "ORD",
        job,
        sequence=sequence,
        settles=options.get("settles", False),
        waited_long=options.get("waited_long", False),
    )
    return entry.turn if entry.turn is not Turn.WAIT else ("wait", entry.head)


def test_the_first_in_line_goes_the_others_wait_for_it(client: redis.Redis) -> None:
    book = make_book(client)
    assert enter(book, "a") is Turn.GO
    assert enter(book, "b") == ("wait", "a")
    assert enter(book, "c") == ("wait", "a")
    book.leave("ORD", "a")
    assert enter(book, "c") == ("wait", "b")  # b was in line first
    assert enter(book, "b") is Turn.GO


def test_a_delivery_sets_what_the_order_shows_and_lets_the_next_go(client: redis.Redis) -> None:
    book = make_book(client)
    enter(book, "a", sequence=4)
    enter(book, "b", sequence=5)
    book.delivered("ORD", "a", status="shipped", payment="paid", sequence=4)
    entry = book.enter("ORD", "b", sequence=5, settles=False, waited_long=False)
    assert entry.turn is Turn.GO
    assert entry.delivered.order_status == "shipped"
    assert entry.delivered.payment_status == "paid"
    assert entry.delivered.sequence == 4
    assert entry.delivered.job_id == "a"
    assert entry.delivered.at is not None
    assert abs(entry.delivered.at - time.time()) < 5


def test_sequences_order_the_line_whatever_the_order_of_arrival(client: redis.Redis) -> None:
    book = make_book(client)
    assert enter(book, "third", sequence=30) is Turn.GO
    assert enter(book, "first", sequence=10) is Turn.GO  # now the head
    assert enter(book, "third", sequence=30) == ("wait", "first")
    assert enter(book, "second", sequence=20) == ("wait", "first")


def test_a_waiter_sleeps_until_its_head_is_due_back(client: redis.Redis) -> None:
    book = make_book(client)
    enter(book, "a")
    book.park("ORD", "a", 3.0)
    entry = book.enter("ORD", "b", sequence=None, settles=False, waited_long=False)
    assert entry.head == "a"
    assert entry.wait is not None
    assert 2.5 < entry.wait <= 3.0


def test_a_head_unseen_for_longer_than_any_absence_is_skipped_by_a_long_waiter(
    client: redis.Redis,
) -> None:
    book = make_book(client, absence=0.5)
    enter(book, "lost")
    enter(book, "b")
    time.sleep(0.7)
    assert enter(book, "b") == ("wait", "lost")  # b has not waited that long itself
    assert enter(book, "b", waited_long=True) is Turn.GO
    assert enter(book, "c") == ("wait", "b")


def test_a_sequenced_job_a_worker_registered_settles_first(client: redis.Redis) -> None:
    book = make_book(client, settle=0.3)
    entry = book.enter("ORD", "a", sequence=1, settles=True, waited_long=False)
    assert entry.turn is Turn.SETTLE
    assert entry.wait is not None
    assert 0.2 < entry.wait <= 0.3
    time.sleep(0.35)
    assert enter(book, "a", sequence=1, settles=True) is Turn.GO


def test_a_job_the_producer_registered_does_not_settle(client: redis.Redis) -> None:
    book = make_book(client, settle=5.0)
    pipe = client.pipeline()
    book.register(pipe, "ORD", "a", 1)
    pipe.execute()
    assert enter(book, "a", sequence=1, settles=True) is Turn.GO


def test_every_key_expires(client: redis.Redis) -> None:
    book = make_book(client)
    enter(book, "a")
    enter(book, "b")
    book.park("ORD", "a", 1.0)
    book.delivered("ORD", "a", status="shipped", payment="paid", sequence=None)
    keys = client.keys("zapi-queue:order:*")
    assert len(keys) == 3
    assert all(0 < client.ttl(key) <= 3600 for key in keys)


def test_a_job_due_later_is_not_taken_for_lost_before_it_is_due(client: redis.Redis) -> None:
    """A job fetched with an eta counts as seen until it is due (worker/fetch_scripts.py CLAIM):
    a later update that has waited past the absence limit still waits for it."""
    from worker.fetch_scripts import SCRIPTS

    lines = OrderLines(client, instance_id="i-due", ttl=600, absence=0.001, settle=0)
    line, jobs, _ = lines.keys("ORD-DUE")
    processing, queue, owned = "proc-due", "queue-due", "owned-due"
    client.lpush(processing, "raw-a")
    due_us = int((time.time() + 60) * 1_000_000)
    keys = ["leases", "sources", "owners", "unacked", "holders", "index"]
    claim = client.register_script(SCRIPTS["claim"])
    claim(
        keys=[*keys, processing, queue, owned, line, jobs],
        args=[60, 1, "raw-a", "tag-a", "", "job-a", "", 600, "0", str(due_us)],
    )
    entry = lines.enter("ORD-DUE", "job-b", sequence=None, settles=False, waited_long=True)
    assert entry.turn is Turn.WAIT
    assert entry.head == "job-a"
    assert entry.wait is not None
    assert 55 < entry.wait <= 60  # it sleeps until A is due, not a poll


def test_a_claim_with_an_unstorable_position_still_claims_its_batch(client: redis.Redis) -> None:
    from worker.fetch_scripts import SCRIPTS

    lines = OrderLines(client, instance_id="i-bad", ttl=600, absence=600, settle=0)
    line, jobs, _ = lines.keys("ORD-BAD")
    processing, queue, owned = "proc-bad", "queue-bad", "owned-bad"
    client.lpush(processing, "raw-1", "raw-2", "raw-3")
    keys = ["leases", "sources", "owners", "unacked", "holders", "index"]
    claim = client.register_script(SCRIPTS["claim"])
    per_message: list[str | int] = []
    for n, position in enumerate(["", "1" + "0" * 400, "inf"], start=1):
        per_message += [f"raw-{n}", f"tag-{n}", f"record-{n}", f"job-{n}", position, 600, "0", ""]
    answers, _ = claim(
        keys=[*keys, processing, queue, owned, line, jobs, line, jobs, line, jobs],
        args=[60, 3, *per_message],
    )
    assert answers == [1, 1, 1]
    assert client.llen(processing) == 0
    assert client.hlen("unacked") == 3
    assert client.zrange(line, 0, -1) == [b"job-1", b"job-2", b"job-3"]
