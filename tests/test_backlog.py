"""The backlog's logic: each job's state from its message, the scaling value's cap by Little's
law, the instances it is reported for, the oldest job's age, and the workers' mean send time
kept in Redis."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from config.instances import Instance
from devtools.redis_server import RedisServer
from tasks.state.keys import SEND_SECONDS_TTL, registered
from tasks.state.send_times import SendTimes, blended, read_send_seconds, send_seconds_key
from worker.backlog import InstanceBacklog, Sightings, backlogs, scaling_jobs
from worker.queue_census import IN_WORKERS, QUEUED, SCHEDULED, Census, JobFacts

NOW = 1_800_000_000.0


def envelope(kwargs: dict[str, object], **headers: object) -> dict[str, object]:
    """A kombu message as the Redis transport stores it (body base64, protocol 2)."""
    body = base64.b64encode(json.dumps([[{}], kwargs, {}]).encode()).decode()
    return {"body": body, "headers": headers, "properties": {"body_encoding": "base64"}}


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


# -- a job's state -------------------------------------------------------------------------


@given(offset=st.floats(-1e6, 1e6, allow_nan=False), fetched=st.booleans())
def test_a_job_is_scheduled_only_when_fetched_with_an_eta_ahead(
    offset: float, fetched: bool
) -> None:
    facts = JobFacts.of(envelope({"instance": "shop"}, id="j", eta=iso(NOW + offset)))
    assert facts is not None
    assert facts.alias == "shop"
    assert facts.eta == pytest.approx(NOW + offset, abs=1e-5)
    assert facts.eta is not None
    expected = QUEUED if not fetched else SCHEDULED if facts.eta > NOW else IN_WORKERS
    assert facts.state(fetched, NOW) == expected


@pytest.mark.parametrize("eta", [None, "", "tomorrow", 12, "2026-13-01T00:00:00"])
def test_a_job_without_a_readable_eta_is_due(eta: object) -> None:
    facts = JobFacts.of(envelope({}, id="j", eta=eta))
    assert facts is not None
    assert facts.eta is None
    assert facts.state(True, NOW) == IN_WORKERS
    assert facts.alias == "default"


def test_an_eta_without_a_zone_is_utc_as_celery_writes_it() -> None:
    naive = datetime(2027, 1, 2, 3, 4, 5)
    utc = naive.replace(tzinfo=UTC)
    for eta, expected in ((naive, utc), (utc + timedelta(hours=3), utc + timedelta(hours=3))):
        facts = JobFacts.of(envelope({}, id="j", eta=eta.isoformat()))
        assert facts is not None
        assert facts.eta == expected.timestamp()


@given(sequence=st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.none()))
def test_only_a_producers_microsecond_stamp_dates_a_job(sequence: object) -> None:
    facts = JobFacts.of(envelope({"sequence": sequence}, id="j"))
    assert facts is not None
    if type(sequence) is int and sequence > 1e15:
        assert facts.stamped == sequence / 1e6
    else:
        assert facts.stamped is None


@pytest.mark.parametrize("message", [None, {}, {"body": 5}, {"body": "not base64 json"}])
def test_a_message_without_a_job_has_no_facts(message: object) -> None:
    assert JobFacts.of(message) is None


# -- the scaling value -----------------------------------------------------------------------


def test_a_fleet_at_its_rate_limit_scales_for_what_the_limit_keeps_busy() -> None:
    # 10,000 jobs for one instance at 10/s with 0.5 s sends: 5 jobs of work in flight.
    assert scaling_jobs(10_000, 0, 10, 0.5) == 5
    assert scaling_jobs(3, 0, 10, 0.5) == 3  # less than that: all of it
    assert scaling_jobs(10_000, 0, 0.1, 0.5) == 1  # a slow limit still needs a worker
    assert scaling_jobs(10_000, 0, None, 0.5) == 10_000  # no rate known: not capped
    assert scaling_jobs(0, 0, 10, 0.5) == 0
    assert scaling_jobs(0, 7, 10, 0.5) == 1  # someone must hold the scheduled jobs
    assert scaling_jobs(2, 7, 10, 0.5) == 2  # and they add nothing more


counts = st.integers(0, 10**7)
rates = st.one_of(st.none(), st.floats(0.01, 10_000))
send_times = st.floats(0.001, 600)


@given(active=counts, scheduled=counts, rate=rates, seconds=send_times)
def test_the_scaling_value_never_exceeds_the_due_jobs_nor_the_cap(
    active: int, scheduled: int, rate: float | None, seconds: float
) -> None:
    value = scaling_jobs(active, scheduled, rate, seconds)
    assert value <= max(active, 1 if scheduled else 0)
    if rate is not None:
        assert value <= max(1.0, rate * seconds)
    assert (value > 0) == (active + scheduled > 0)  # any job keeps the fleet active
    if active:
        assert value >= 1  # a due job is worth a worker


@given(active=counts, more=counts, scheduled=counts, rate=rates, seconds=send_times)
def test_more_due_jobs_never_lower_the_scaling_value(
    active: int, more: int, scheduled: int, rate: float | None, seconds: float
) -> None:
    assert scaling_jobs(active + more, scheduled, rate, seconds) >= scaling_jobs(
        active, scheduled, rate, seconds
    )


def instance(alias: str, label: str, instance_id: str, rate: float) -> Instance:
    token = SecretStr("")
    return Instance(alias, label, instance_id, token, token, rate, 1)


def test_backlogs_cover_every_instance_and_every_alias_the_census_found() -> None:
    census = Census(
        queued=Counter({"default": 30, "ghost": 2}),
        scheduled=Counter({"shop": 4}),
        in_workers=Counter({"default": 6}),
    )
    found = backlogs(
        census,
        [instance("default", "3C9D-id", "id-1", 10), instance("shop", "shop", "id-2", 2)],
        {"id-1": 0.5},
        1.0,
    )
    assert found == [
        InstanceBacklog("3C9D-id", 30, 0, 6, 10, 0.5),
        InstanceBacklog("shop", 0, 4, 0, 2, 1.0),  # no mean measured: the setting
        InstanceBacklog("ghost", 2, 0, 0, None, 1.0),
    ]
    assert [b.jobs for b in found] == [36, 4, 2]
    assert [b.drain_seconds for b in found] == [3.6, 2.0, None]
    assert [b.scaling for b in found] == [5, 1, 2]


# -- the oldest job's age ------------------------------------------------------------------


def test_the_oldest_age_takes_stamps_and_first_sightings_and_skips_scheduled_jobs() -> None:
    sightings = Sightings(cap=3)
    census = Census(oldest_stamp=NOW - 50, unstamped={"a": True, "s": False})
    assert sightings.oldest_age(census, NOW) == 50
    # The stamped job finished; "a", first seen 100 s ago, is the oldest; "s", scheduled, was
    # dated then too but does not count until it falls due.
    assert sightings.oldest_age(Census(unstamped={"a": True, "s": False}), NOW + 100) == 100
    assert sightings.oldest_age(Census(unstamped={"s": False}), NOW + 150) == 0
    assert sightings.oldest_age(Census(unstamped={"s": True}), NOW + 150) == 150


def test_sightings_forget_the_least_recently_seen_beyond_their_cap() -> None:
    sightings = Sightings(cap=2)
    assert sightings.first("a", 1.0) == 1.0
    assert sightings.first("b", 2.0) == 2.0
    assert sightings.first("a", 3.0) == 1.0
    sightings.first("c", 4.0)  # "b", the least recently seen, goes
    assert sightings.first("a", 4.5) == 1.0
    assert sightings.first("b", 5.0) == 5.0  # forgotten: seen anew


# -- the workers' mean send time -------------------------------------------------------------


@given(mean=st.one_of(st.none(), send_times), sample=send_times)
def test_the_mean_moves_toward_each_sample_and_stays_between(
    mean: float | None, sample: float
) -> None:
    new = blended(mean, sample)
    low, high = (sample, sample) if mean is None else sorted((mean, sample))
    assert low - 1e-9 <= new <= high + 1e-9


@pytest.fixture
def state(own_redis: RedisServer) -> redis.Redis:
    client = own_redis.client()
    client.flushdb()
    return client


def test_a_worker_writes_its_mean_at_most_once_a_second_with_a_ttl(state: redis.Redis) -> None:
    times = SendTimes(interval=0.5)
    key = send_seconds_key("inst-1")
    assert registered(key) is not None
    times.observe(state, "inst-1", 2.0)
    assert float(state.get(key) or 0) == 2.0
    assert 0 < state.ttl(key) <= SEND_SECONDS_TTL
    times.observe(state, "inst-1", 0.0)  # within the interval: kept in memory only
    assert float(state.get(key) or 0) == 2.0
    time.sleep(0.6)
    times.observe(state, "inst-1", 1.0)  # 2.0, then 1.6 (0.0), then 1.48 (1.0)
    assert float(state.get(key) or 0) == pytest.approx(1.48)
    state.set(send_seconds_key("inst-2"), "nan")
    state.set(send_seconds_key("inst-3"), "-1")
    assert read_send_seconds(state, ["inst-1", "inst-2", "inst-3", "inst-4"]) == {
        "inst-1": pytest.approx(1.48)
    }
    assert read_send_seconds(state, []) == {}


def test_a_redis_error_costs_a_send_nothing() -> None:
    down = redis.Redis(port=1, socket_connect_timeout=0.2)
    SendTimes().observe(down, "inst-1", 1.0)  # no exception
