"""When a pass over an instance's queue at Z-API is due (worker/queue_reconciler.py), and that
one worker of the fleet takes it (a turn in a real Redis). The passes themselves, through a real
worker and the fake, are tests/test_latest_state_e2e.py."""

from __future__ import annotations

import time

import redis

from tasks.state.instances import Connection
from tasks.state.zapi_queue import LastPass, ZapiQueueBook
from tests.conftest import empty_db_fixture
from worker.queue_reconciler import pass_due

client = empty_db_fixture(11)
NOW = time.time()


def last(at: float, *, disconnected: bool) -> LastPass:
    return LastPass(at, total=2, ours=2, withdrawn=0, partial=False, disconnected=disconnected)


def test_a_disconnected_phone_is_passed_over_at_the_interval_or_when_wanted() -> None:
    away = Connection(connected=False, error="You are not connected.", at=NOW - 60)
    assert pass_due(away, None, wanted=False, interval=5, now=NOW)  # none since the disconnection
    assert pass_due(away, last(NOW - 6, disconnected=True), wanted=False, interval=5, now=NOW)
    assert not pass_due(away, last(NOW - 1, disconnected=True), wanted=False, interval=5, now=NOW)
    assert pass_due(away, last(NOW - 1, disconnected=True), wanted=True, interval=5, now=NOW)
    # A new disconnection since the last pass: at once.
    again = Connection(connected=False, error=None, at=NOW)
    assert pass_due(again, last(NOW - 1, disconnected=True), wanted=False, interval=5, now=NOW)


def test_once_more_when_the_phone_is_back_then_no_more() -> None:
    back = Connection(connected=True, error=None, at=NOW)
    assert pass_due(back, last(NOW - 1, disconnected=True), wanted=False, interval=5, now=NOW)
    assert not pass_due(back, last(NOW, disconnected=False), wanted=False, interval=5, now=NOW)
    assert not pass_due(back, None, wanted=False, interval=5, now=NOW)  # never disconnected
    assert not pass_due(None, None, wanted=True, interval=5, now=NOW)  # no event yet


def test_one_worker_of_the_fleet_takes_the_turn(client: redis.Redis) -> None:
    first, second = ZapiQueueBook(client, "inst-1"), ZapiQueueBook(client, "inst-1")
    assert first.take_turn("host-a:1")
    assert not second.take_turn("host-b:2")
    second.release_turn("host-b:2")  # not its turn: nothing released
    assert not second.take_turn("host-b:2")
    first.release_turn("host-a:1")
    assert second.take_turn("host-b:2")
    assert ZapiQueueBook(client, "inst-2").take_turn("host-a:1")  # instances apart


def test_a_wish_for_a_pass_is_taken_once_and_a_pass_is_kept(client: redis.Redis) -> None:
    book = ZapiQueueBook(client, "inst-3")
    assert not book.wanted()
    book.want()
    assert book.wanted()
    assert not book.wanted()
    assert book.last() is None
    book.record(last(NOW, disconnected=True))
    assert book.last() == last(float(f"{NOW:.6f}"), disconnected=True)
    assert 0 < client.ttl("zapi-queue:reconcile:inst-3") <= 30 * 86_400
