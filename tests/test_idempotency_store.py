"""Claims, sends in flight and replies (tasks/state/idempotency.py) against a real Redis."""

from __future__ import annotations

import itertools
import time

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.state.idempotency import AMBIGUOUS_FIELD, ClaimState, IdempotencyStore, with_ambiguity
from tasks.state.sends import (
    HISTORY_MINUTES,
    REFUSED_PREFIX,
    SENT_PREFIX,
    SENT_TTL,
    count_refusal,
    refusals_per_minute,
    sends_in_last_minute,
    sends_per_minute,
    sent_counter,
)
from tests.conftest import empty_db_fixture

_instances = itertools.count()
REPLY = {"zaapId": "Z1", "messageId": "M1", "id": "M1"}


client = empty_db_fixture(4)


def make_store(client: redis.Redis, *, send_lease: float = 5.0) -> IdempotencyStore:
    return IdempotencyStore(
        client,
        instance_id=f"idem-{next(_instances)}",
        ttl=3600,
        wait_lease=5.0,
        send_lease=send_lease,
    )


def test_one_execution_sends_the_others_wait_then_find_the_reply(client: redis.Redis) -> None:
    store = make_store(client)
    assert store.claim("k", "a").state is ClaimState.CLAIMED
    assert store.claim("k", "b").state is ClaimState.BUSY
    assert store.before_send("k", "a").state is ClaimState.CLAIMED
    store.record("k", "a", REPLY, "job-a")
    again = store.claim("k", "b")
    assert (again.state, again.reply) == (ClaimState.DELIVERED, REPLY)


def test_the_claim_is_re_asserted_before_the_send(client: redis.Redis) -> None:
    """A claim that lapsed during the slot wait is taken again, unless another took it."""
    store = make_store(client)
    store.claim("k", "a")
    client.delete(*client.keys("*:claim"))  # the wait outlived the first lease
    assert store.before_send("k", "a").state is ClaimState.CLAIMED
    store.release("k", "a")
    store.claim("k", "b")
    assert store.before_send("k", "a").state is ClaimState.BUSY


def test_release_and_record_drop_only_their_own_claim(client: redis.Redis) -> None:
    store = make_store(client)
    store.claim("k", "a")
    store.before_send("k", "a")
    client.delete(*client.keys("*:claim"))  # a's request outlived its deadline: b claims
    assert store.claim("k", "b").state is ClaimState.CLAIMED
    store.release("k", "a")
    store.record("k", "a", REPLY, "job-a")  # a's late reply is kept; b's claim is not a's to drop
    [claim_key] = client.keys("*:claim")
    assert client.get(claim_key) == b"b"
    assert store.claim("k", "c").reply == REPLY


def test_a_send_abandoned_in_flight_makes_the_next_one_ambiguous(client: redis.Redis) -> None:
    """The execution that sent died (or froze past its claim) before any outcome."""
    store = make_store(client, send_lease=1.0)
    store.claim("k", "a")
    store.before_send("k", "a")
    time.sleep(1.2)
    claim = store.claim("k", "b")
    assert (claim.state, claim.ambiguous) == (ClaimState.CLAIMED, 1)
    assert store.before_send("k", "b").ambiguous == 1


def test_a_send_that_may_have_arrived_counts_and_a_refused_one_does_not(
    client: redis.Redis,
) -> None:
    store = make_store(client)
    store.claim("k", "a")
    store.before_send("k", "a")
    assert store.after_failed_send("k", "a", ambiguous=True) == 1
    store.claim("k", "b")
    store.before_send("k", "b")
    assert store.after_failed_send("k", "b", ambiguous=False) == 1
    claim = store.claim("k", "c")
    assert (claim.state, claim.ambiguous) == (ClaimState.CLAIMED, 1)


def test_every_key_expires(client: redis.Redis) -> None:
    store = make_store(client)
    store.claim("k", "a")
    store.before_send("k", "a")
    store.after_failed_send("k", "a", ambiguous=True)
    store.claim("j", "a")
    store.before_send("j", "a")
    store.record("j", "a", REPLY, "job-a")
    keys = client.keys("zapi-queue:idem:*")
    assert keys
    assert all(0 < client.ttl(key) <= 3600 for key in keys), {k: client.ttl(k) for k in keys}


def test_the_result_names_ambiguous_sends_only_when_there_were_some() -> None:
    assert with_ambiguity(REPLY, 0) == REPLY
    assert with_ambiguity(REPLY, 2) == {**REPLY, AMBIGUOUS_FIELD: 2}


def test_a_later_record_learns_the_first_reply(client: redis.Redis) -> None:
    """An execution that took a job over records its reply first; the one it replaced, resumed,
    records too and must return the first reply (with its ambiguity), not its own."""
    store = make_store(client)
    first = {**REPLY, "ambiguousAttempts": 1}
    assert store.record("k2", "b", first, "job-b") is None
    assert store.record("k2", "a", REPLY, "job-a") == first


def test_a_reply_recorded_while_a_takeover_sends_counts_that_send(client: redis.Redis) -> None:
    """a sent, then waited for Redis past its claim; b took the job over and is sending: a's
    reply, recorded first, says one other send may have arrived, and b's result is a's."""
    store = make_store(client)
    store.claim("k", "a")
    store.before_send("k", "a")
    client.delete(*client.keys("*:claim"))  # a's claim lapsed while Redis was away
    assert store.claim("k", "b").ambiguous == 1  # a's send, as b sees it
    store.before_send("k", "b")
    stored = store.record("k", "a", REPLY, "job-a")
    assert stored == {**REPLY, AMBIGUOUS_FIELD: 1}
    assert store.record("k", "b", {**REPLY, "zaapId": "Z2", AMBIGUOUS_FIELD: 1}, "job-b") == stored
    assert store.claim("k", "c").reply == stored


def test_a_takeover_that_has_not_sent_adds_no_ambiguity(client: redis.Redis) -> None:
    """b counted a's send as abandoned but sent nothing; a's reply is that send's outcome."""
    store = make_store(client)
    store.claim("k", "a")
    store.before_send("k", "a")
    client.delete(*client.keys("*:claim"))
    store.claim("k", "b")
    assert store.record("k", "a", REPLY, "job-a") is None
    assert store.claim("k", "c").reply == REPLY


@settings(max_examples=60)
@given(st.lists(st.sampled_from(["claim", "send", "lapse", "timeout"]), max_size=12))
def test_a_reply_counts_exactly_the_other_sends_that_may_have_arrived(
    client: redis.Redis, steps: list[str]
) -> None:
    """Executions take turns as generated: a new one claims, the current one sends, its claim
    lapses (its send unanswered, as when Redis went away), or its send times out (an ambiguous
    failure). When the current one then delivers, the stored reply counts every other send:
    none goes unreported, none is counted twice."""
    client.flushdb()
    store = make_store(client)
    owners = (f"o{n}" for n in itertools.count())
    current = next(owners)
    sends: list[str] = []  # the owner of each send made, in order
    flying: set[str] = set()  # owners whose send has no outcome yet
    seen = 0
    for step in steps:
        if step == "claim":
            current = next(owners)
            store.claim("k", current)
        elif step == "send" and current not in flying:
            claim = store.before_send("k", current)
            if claim.state is ClaimState.CLAIMED:
                sends.append(current)
                flying.add(current)
                seen = claim.ambiguous  # what the sender's result would say
        elif step == "lapse":
            for claim_key in client.keys("*:claim"):
                client.delete(claim_key)
        elif step == "timeout" and current in flying:
            store.after_failed_send("k", current, ambiguous=True)
            flying.discard(current)
    if current not in flying:
        claim = store.before_send("k", current)
        if claim.state is not ClaimState.CLAIMED:
            return  # another execution holds the key: the current one may not send
        sends.append(current)
        seen = claim.ambiguous
    given = with_ambiguity(REPLY, seen)
    stored = store.record("k", current, given, "job") or given
    assert stored.get(AMBIGUOUS_FIELD, 0) == len(sends) - 1, sends


def test_each_send_that_goes_ahead_is_counted_for_the_last_minute(client: redis.Redis) -> None:
    store = make_store(client)
    instance_id = store.keys("k")[0].split(":")[2]
    assert store.before_send("k", "a").state is ClaimState.CLAIMED
    assert store.before_send("k", "b").state is ClaimState.BUSY  # not sent: not counted
    store.after_failed_send("k", "a", ambiguous=False)
    assert store.before_send("k", "a").state is ClaimState.CLAIMED  # a retry is a second send
    store.record("k", "a", REPLY, "job-a")
    assert store.before_send("k", "c").state is ClaimState.DELIVERED  # nothing sent
    assert sends_in_last_minute(client, instance_id) == 2
    for key in client.scan_iter(match=f"{SENT_PREFIX}*"):
        assert 0 < client.ttl(key) <= SENT_TTL


def test_the_last_hour_is_told_minute_by_minute_oldest_first(client: redis.Redis) -> None:
    now = 1_800_000_030.5  # minute 30_000_000, half way through
    for at in (now, now - 1, now - 31, now - 60 * 59, now - 60 * 60, now - 60 * 61):
        key, second = sent_counter("hour", at)
        client.hincrby(key, str(second), 1)
    counts = sends_per_minute(client, "hour", now=now)
    # The current minute holds now, now-1 and (the minute's start) nothing of now-31.
    assert len(counts) == 60
    assert counts[-1] == 2
    assert counts[-2] == 1
    assert counts[0] == 1  # 59 minutes ago; 60 and 61 minutes ago are outside the hour
    assert sum(counts) == 4
    assert sends_per_minute(client, "hour", minutes=3, now=now) == [0, 1, 2]
    with pytest.raises(ValueError, match="kept for"):
        sends_per_minute(client, "hour", minutes=HISTORY_MINUTES + 1, now=now)


def test_429s_are_counted_per_minute_apart_from_the_sends(client: redis.Redis) -> None:
    now = 1_800_000_030.5
    for at in (now, now - 1, now - 120):
        count_refusal(client, "busy", at)
    assert refusals_per_minute(client, "busy", minutes=3, now=now) == [1, 0, 2]
    assert sends_per_minute(client, "busy", minutes=3, now=now) == [0, 0, 0]
    for key in client.scan_iter(match=f"{REFUSED_PREFIX}*"):
        assert 0 < client.ttl(key) <= SENT_TTL


def test_the_last_minute_is_sixty_seconds_across_two_hashes(client: redis.Redis) -> None:
    now = 1_800_000_030.5  # half a minute into a minute
    for at in (now - 61, now - 60, now - 59, now - 31, now - 30, now, now + 1):
        key, second = sent_counter("win", at)
        client.hincrby(key, str(second), 1)
    # Seconds now-59 .. now: the counts at now-59, now-31, now-30 and now.
    assert sends_in_last_minute(client, "win", now=now) == 4
