"""The one round trip that starts a job (tasks/state/turns.py): its order's turn, its claim, its
rate slot and, when the slot is now, its send marked in flight; against a real Redis."""

from __future__ import annotations

import itertools
import time

import redis

from tasks.state.idempotency import ClaimState, IdempotencyStore
from tasks.state.orders import OrderLines, Turn
from tasks.state.ratelimit import RateLimiter, hold_sends
from tasks.state.sends import sends_in_last_minute
from tasks.state.turns import Turns
from tests.conftest import empty_db_fixture

_instances = itertools.count()
PHONE = "5511999999999"
REPLY = {"zaapId": "Z1", "messageId": "M1", "id": "M1"}


client = empty_db_fixture(11)


def make_turns(
    client: redis.Redis, *, rate: float = 1000.0, burst: int = 10, recipient_interval: float = 0.0
) -> Turns:
    instance_id = f"turns-{next(_instances)}"
    lines = OrderLines(client, instance_id=instance_id, ttl=3600, absence=600, settle=0.0)
    store = IdempotencyStore(
        client, instance_id=instance_id, ttl=3600, wait_lease=5.0, send_lease=20.0
    )
    limiter = RateLimiter(
        client,
        instance_id=instance_id,
        rate=rate,
        burst=burst,
        recipient_interval=recipient_interval,
    )
    return Turns(client, lines, store, limiter)


def enter_args(turns: Turns, job: str) -> list[object]:
    return turns.lines.enter_args(job, sequence=None, settles=False, waited_long=False)


def instance_of(turns: Turns) -> str:
    return turns.limiter.instance_key.rsplit(":", 1)[-1]


def test_a_free_slot_marks_the_send_in_flight_and_counts_it(client: redis.Redis) -> None:
    turns = make_turns(client)
    entry, start = turns.enter_and_start("ORD", "k", "a", enter_args(turns, "job-1"), PHONE)
    assert entry.turn is Turn.GO
    assert start is not None
    assert start.claim.state is ClaimState.CLAIMED
    assert start.reservation is not None
    assert start.reservation.granted
    assert start.sending is not None
    assert start.sending.state is ClaimState.CLAIMED
    _, claim_key, sent_key = turns.store.keys("k")
    assert client.hget(sent_key, "inflight") == b"a"
    assert 15_000 < client.pttl(claim_key) <= 25_000  # the send's lease, not the wait's
    assert sends_in_last_minute(client, instance_of(turns)) == 1
    # Another execution of the key is turned away, and takes no slot.
    before = client.get(turns.limiter.instance_key)
    other = turns.start("k", "b", PHONE)
    assert other.claim.state is ClaimState.BUSY
    assert other.reservation is None
    assert client.get(turns.limiter.instance_key) == before


def test_a_far_slot_is_returned_to_wait_for_and_nothing_is_marked(client: redis.Redis) -> None:
    turns = make_turns(client, rate=1.0, burst=1)
    first = turns.start("k1", "a", PHONE)
    assert first.sending is not None
    second = turns.start("k2", "b", PHONE)
    assert second.claim.state is ClaimState.CLAIMED
    assert second.reservation is not None
    assert 0.9 < second.reservation.wait <= 1.0
    assert second.sending is None
    _, claim_key, sent_key = turns.store.keys("k2")
    assert client.hget(sent_key, "inflight") is None
    assert client.get(claim_key) == b"b"  # kept for the wait
    assert sends_in_last_minute(client, instance_of(turns)) == 1


def test_a_held_instance_or_a_paced_recipient_drops_the_claim(client: redis.Redis) -> None:
    turns = make_turns(client, recipient_interval=30.0)
    assert turns.start("k1", "a", PHONE).sending is not None
    paced = turns.start("k2", "b", PHONE)
    assert paced.reservation is not None
    assert not paced.reservation.granted
    assert paced.sending is None
    assert client.get(turns.store.keys("k2")[1]) is None
    hold_sends(client, instance_of(turns), 60)
    held = turns.start("k3", "c", "5511888888888")
    assert held.reservation is not None
    assert held.reservation.held
    assert client.get(turns.store.keys("k3")[1]) is None


def test_a_delivered_key_returns_its_reply_without_a_slot(client: redis.Redis) -> None:
    turns = make_turns(client)
    turns.store.record("k", "a", REPLY, "job-1")
    before = client.get(turns.limiter.instance_key)
    start = turns.start("k", "b", PHONE)
    assert start.claim.state is ClaimState.DELIVERED
    assert start.claim.reply == REPLY
    assert start.reservation is None
    assert start.sending is None
    assert client.get(turns.limiter.instance_key) == before


def test_a_job_holding_a_slot_only_claims(client: redis.Redis) -> None:
    turns = make_turns(client)
    start = turns.start("k", "a", None)
    assert start.claim.state is ClaimState.CLAIMED
    assert start.reservation is None
    assert start.sending is None
    assert client.get(turns.limiter.instance_key) is None


def test_a_job_not_at_its_turn_claims_nothing(client: redis.Redis) -> None:
    turns = make_turns(client)
    turns.lines.enter("ORD", "job-1", sequence=None, settles=False, waited_long=False)
    entry, start = turns.enter_and_start("ORD", "k", "a", enter_args(turns, "job-2"), PHONE)
    assert entry.turn is Turn.WAIT
    assert start is None
    assert client.get(turns.store.keys("k")[1]) is None
    assert client.get(turns.limiter.instance_key) is None


def test_a_withdrawn_send_is_unmarked_and_uncounted(client: redis.Redis) -> None:
    turns = make_turns(client)
    start = turns.start("k", "a", PHONE)
    assert start.sending is not None
    turns.store.withdraw("k", "a", start.at)
    _, claim_key, sent_key = turns.store.keys("k")
    assert client.hget(sent_key, "inflight") is None
    assert client.get(claim_key) is None
    assert sends_in_last_minute(client, instance_of(turns), now=time.time()) == 0
    # The next execution is not told of an ambiguous send: none left.
    assert turns.start("k", "b", PHONE).sending.ambiguous == 0  # type: ignore[union-attr]
