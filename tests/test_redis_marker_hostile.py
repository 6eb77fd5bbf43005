"""Generated hostile input at the marker's door (worker/redis_marker.py): whatever anyone with
access to the Redis writes into the marker key, reading it gives a well-formed marker, none, or
the documented damaged reading; health reports the damage, the watch and an acknowledgement
carry on. Against the session's real Redis."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from devtools.processes import stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tests.cli import run_cli
from tests.conftest import empty_db_fixture
from worker.cli.common import RedisClients, when
from worker.cli.health_data import check_data_kept, data_lines
from worker.redis_marker import (
    MARKER_KEY,
    MARKER_TTL,
    Damaged,
    Marker,
    acknowledge_loss,
    read_marker,
    watch,
)

DB = 7  # tests/test_redis_marker.py's: its tests and these never run at once
client = empty_db_fixture(DB)

TIMES = ("since", "lost_at", "acknowledged_at", "restarted_at")
EARLIEST = 946_684_800.0  # 2000-01-01
#: A time as a worker writes it, any moment from 2000 to a minute ago.
GOOD_TIMES = st.floats(min_value=EARLIEST, max_value=time.time() - 60).map(lambda t: f"{t:.3f}")
#: Near misses of a time: float() takes most of them, none is a time a worker wrote.
NEAR_MISSES: list[str | bytes] = [
    *("", " ", "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "-1", "0", "-0.5", "1e300"),
    *("1e9", "1_700_000_000", " 1700000000", "1700000000 ", "1700000000.", ".5", "0x65000000"),
    *("1700000000.5x", "4102444800", "99999999999.999", "9" * 400, b"17000\xff00000"),
    "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",  # Arabic digits
]
#: Near misses, and anything at all.
HOSTILE = st.one_of(
    st.sampled_from(NEAR_MISSES),
    st.floats().map(repr),
    st.integers().map(str),
    st.text(max_size=30),
    st.binary(max_size=30),
)
FIELD_NAMES = st.sampled_from([*TIMES, "run_id"]).map(str.encode) | st.binary(max_size=10)
#: The key as a hash (fields good or not, maybe none: no key), or as another type.
CONTENTS = st.one_of(
    st.tuples(st.just("hash"), st.dictionaries(FIELD_NAMES, GOOD_TIMES | HOSTILE, max_size=6)),
    st.tuples(st.sampled_from(["string", "list", "set", "zset"]), st.binary(max_size=10)),
)


def write(client: redis.Redis, contents: tuple[str, Any]) -> dict[bytes, Any]:
    """The marker key as ``contents`` says; returns the hash's fields (none for another type)."""
    kind, value = contents
    client.delete(MARKER_KEY)
    if kind == "hash":
        if value:
            client.hset(MARKER_KEY, mapping=value)
        return dict(value)
    if kind == "string":
        client.set(MARKER_KEY, value)
    elif kind == "list":
        client.rpush(MARKER_KEY, value)
    elif kind == "set":
        client.sadd(MARKER_KEY, value)
    else:
        client.zadd(MARKER_KEY, {value: 1})
    return {}


def written_by_a_worker(value: Any) -> bool:
    """Whether ``value`` is a time as GOOD_TIMES writes it (HOSTILE may make one by chance)."""
    if not isinstance(value, str) or not value.isascii():
        return False
    try:
        seconds = float(value)
    except ValueError:
        return False
    return value == f"{seconds:.3f}" and EARLIEST <= seconds <= time.time()


def assert_well_formed(marker: Marker) -> None:
    latest = time.time() + 86_400
    assert marker.since is not None
    for name in TIMES:
        value = getattr(marker, name)
        if value is not None:
            assert isinstance(value, float), (name, value)
            assert math.isfinite(value), (name, value)
            assert EARLIEST <= value <= latest, (name, value)
            when(value)  # as health shows it


def health_of(server: RedisServer) -> tuple[dict[str, Any], list[str], list[str]]:
    """What ``zapi-queue health`` makes of database DB's marker with one worker answering: the
    broker's entry of the report, the problems, the lines shown."""
    settings = Settings(celery_broker_url=f"{server.url}/{DB}", zapi_instance_id="any")
    report: dict[str, Any] = {"workers": ["zapi-1@host"]}
    problems: list[str] = []
    with RedisClients(retries=1) as clients:
        check_data_kept(settings, clients, report, problems)
    return report["redis_data"]["broker"], problems, data_lines(report["redis_data"])


@given(contents=CONTENTS)
def test_whatever_the_marker_holds_it_reads_well_formed_none_or_damaged(
    client: redis.Redis, redis_server: RedisServer, contents: tuple[str, Any]
) -> None:
    fields = write(client, contents)
    stored = {name: fields.get(name.encode()) for name in TIMES}
    marker = read_marker(client)

    if contents[0] != "hash":
        assert marker == Damaged("the key is not a hash")
    elif not fields:
        assert marker is None
    elif b"since" not in fields:
        assert marker == Damaged("since is missing")  # what the watch takes for a marker gone
    else:
        assert marker is not None
    if isinstance(marker, Marker):
        assert_well_formed(marker)
        for name, value in stored.items():  # what was read is what was written
            assert getattr(marker, name) == (None if value is None else float(value)), name
    if stored["since"] is not None and all(
        written_by_a_worker(value) for value in stored.values() if value is not None
    ):
        assert isinstance(marker, Marker)  # a worker's marker is never taken for damaged

    shown, problems, lines = health_of(redis_server)
    if isinstance(marker, Damaged):
        assert shown == {"marker": True, "damaged": marker.reason}
        [problem] = problems
        assert f"marker is damaged ({marker.reason})" in problem
        assert problem.endswith("--acknowledge-data-loss (it writes a new marker)")
        assert lines == [
            f"broker Redis data: marker DAMAGED ({marker.reason}), "
            "cannot tell since when it is kept"
        ]
    elif isinstance(marker, Marker):
        assert shown["since"] == marker.since
        assert bool(problems) == (marker.unacknowledged_loss is not None)


@given(contents=CONTENTS, starting=st.booleans())
def test_the_watch_and_an_acknowledgement_carry_on_whatever_the_marker_holds(
    client: redis.Redis, contents: tuple[str, Any], starting: bool
) -> None:
    fields = write(client, contents)
    before = read_marker(client)

    outcome = watch(client, starting=starting)
    after = read_marker(client)
    assert after is not None
    assert 0 < client.ttl(MARKER_KEY) <= MARKER_TTL
    if b"since" not in fields:
        # what the watch cannot renew is a marker gone: a loss, unless the worker is starting
        assert outcome == ("new" if starting else "lost")
        assert isinstance(after, Marker)
        assert (after.unacknowledged_loss is None) == starting
    else:
        assert outcome in ("kept", "restarted")
        if outcome == "kept":  # renewed as it was ("restarted" rewrites restarted_at)
            assert after == before

    assert acknowledge_loss(client) == (
        "repaired" if isinstance(after, Damaged) else "acknowledged"
    )
    acknowledged = read_marker(client)
    assert isinstance(acknowledged, Marker)
    assert_well_formed(acknowledged)
    assert acknowledged.unacknowledged_loss is None
    assert 0 < client.ttl(MARKER_KEY) <= MARKER_TTL


@pytest.mark.parametrize("field", TIMES)
@pytest.mark.parametrize("value", NEAR_MISSES)
def test_each_near_miss_of_a_time_is_damage(
    client: redis.Redis, field: str, value: str | bytes
) -> None:
    client.hset(MARKER_KEY, mapping={"since": f"{time.time():.3f}", field: value})
    assert read_marker(client) == Damaged(f"{field} is not a time")


def test_an_acknowledgement_where_there_is_no_marker_writes_nothing(client: redis.Redis) -> None:
    assert acknowledge_loss(client) == "none"
    assert not client.exists(MARKER_KEY)


def test_health_reports_a_damaged_marker_until_acknowledged(
    client: redis.Redis, redis_server: RedisServer, zapi_sim: ZapiSimulator
) -> None:
    """The command as an operator runs it: a damaged marker is a problem with its fix; the
    acknowledgement replaces it with one that vouches for the data from then on."""
    env = stack_env(redis_server.url, zapi_sim, db=DB)
    client.hset(MARKER_KEY, mapping={"since": "nan", "run_id": "x"})
    options = ("--min-workers", "0", "--timeout", "0.2")

    damaged = run_cli(env, "health", *options)
    assert damaged.returncode == 1, damaged.stderr
    assert "broker Redis data: marker DAMAGED (since is not a time)" in damaged.stdout
    assert "  - the broker Redis' zapi-queue marker is damaged (since is not a time)" in (
        damaged.stdout
    )
    assert "Traceback" not in damaged.stdout + damaged.stderr

    repaired = run_cli(env, "health", "--json", "--acknowledge-data-loss", *options)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["healthy"] is True
    data = report["redis_data"]["broker"]
    assert data["lost_at"] == data["since"]
    assert data["loss_acknowledged"] is True
