"""The dead-letter store against a real Redis: letters expire, the index is capped (the oldest
dropped and counted), every key is bounded, pages read no further than asked, and the letters
of the old single-hash layout are migrated."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config import Settings
from devtools.redis_server import RedisServer
from tasks.state.deadletter import (
    INDEX_KEY,
    LEGACY_KEY,
    LETTER_PREFIX,
    TRIMMED_KEY,
    DeadLetter,
    DeadLetterStore,
)
from tests.conftest import empty_db_fixture
from tests.letters import dead_letter

DB = 14


client = empty_db_fixture(DB)


@pytest.fixture
def private_redis() -> Iterator[redis.Redis]:
    """A server of its own: its command statistics are ours alone."""
    with RedisServer() as server:
        client = server.client()
        yield client
        client.close()


@pytest.fixture
def capped(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> DeadLetterStore:
    """A store that counts two error types and two instances by name, the rest as other."""
    monkeypatch.setattr("tasks.state.deadletter.MAX_TYPES", 2)
    monkeypatch.setattr("tasks.state.deadletter.MAX_INSTANCES", 2)
    return DeadLetterStore(client, ttl=600, max_letters=100)


def assert_every_key_expires(client: redis.Redis, match: str) -> None:
    for key in client.scan_iter(match=match):
        assert client.pttl(key) > 0, key


def calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_letter_expires_its_ttl_after_it_failed(client: redis.Redis) -> None:
    store = DeadLetterStore(client, ttl=600)
    fresh, older = dead_letter("fresh", ambiguous_attempts=1), dead_letter("older", age=300)
    store.add(older)
    store.add(fresh)

    assert 595 < client.pttl(LETTER_PREFIX + "fresh") / 1000 <= 600
    assert 295 < client.pttl(LETTER_PREFIX + "older") / 1000 <= 300
    assert 595 < client.pttl(INDEX_KEY) / 1000 <= 600  # lives as long as the newest letter
    assert store.get("fresh") == fresh
    assert store.get("older") == older


def test_an_expired_letter_leaves_the_count_and_its_index_entry_is_trimmed(
    client: redis.Redis,
) -> None:
    store = DeadLetterStore(client, ttl=3)
    store.add(dead_letter("soon-gone", age=2))  # one second left
    store.add(dead_letter("stays"))  # the index lives 3 s, as this one
    assert store.count() == 2
    time.sleep(1.2)

    assert store.get("soon-gone") is None  # Redis expired the record
    assert store.count() == 1  # though its entry is still in the index,
    assert client.zscore(INDEX_KEY, "soon-gone") is not None
    store.add(dead_letter("next"))
    assert client.zrange(INDEX_KEY, 0, -1) == [b"stays", b"next"]  # until the next add
    assert [one.job_id for one in store] == ["stays", "next"]
    assert store.dropped() == 0  # expiry is not the cap: nothing counted


def test_a_letter_older_than_the_ttl_is_not_kept(client: redis.Redis) -> None:
    store = DeadLetterStore(client, ttl=60)
    store.add(dead_letter("ancient", age=61))
    assert store.get("ancient") is None
    assert client.zcard(INDEX_KEY) == 0


def test_the_cap_drops_the_oldest_letters_and_counts_them(client: redis.Redis) -> None:
    cap, extra = 5, 3
    letters = [dead_letter(f"job-{n}", age=100 - n) for n in range(cap + extra)]
    store = DeadLetterStore(client, ttl=3600, max_letters=cap)
    for one in random.sample(letters, len(letters)):  # arrival order does not matter
        store.add(one)

    assert [kept.job_id for kept in store] == [one.job_id for one in letters[extra:]]
    for gone in letters[:extra]:
        assert not client.exists(LETTER_PREFIX + gone.job_id)
    assert store.count() == cap
    assert store.dropped() == extra
    assert int(client.get(TRIMMED_KEY) or 0) == extra


def test_every_key_is_bounded(client: redis.Redis) -> None:
    """A TTL on each letter and the index; the counter is one integer."""
    store = DeadLetterStore(client, ttl=3600, max_letters=2)
    for n in range(4):
        store.add(dead_letter(f"job-{n}"))
    for key in client.scan_iter(count=1000):
        if key == TRIMMED_KEY.encode():
            assert client.type(key) == b"string"
            assert int(client.get(key) or 0) == 2
        else:
            assert 0 < client.ttl(key) <= 3600, key


def test_removed_letters_are_gone_from_both_keys(client: redis.Redis) -> None:
    store = DeadLetterStore(client)
    store.add(dead_letter("a"))
    store.add(dead_letter("b"))
    assert store.remove(["a", "unknown"]) == 1
    assert store.get("a") is None
    assert client.zrange(INDEX_KEY, 0, -1) == [b"b"]


def test_pages_see_every_letter_once_while_each_is_removed(client: redis.Redis) -> None:
    """Replay removes each letter it sends: the next page must not skip any, ties included."""
    store = DeadLetterStore(client)
    failed_at = time.time()
    names = [f"tie-{n}" for n in range(7)] + ["later"]
    for name in names[:-1]:
        store.add(dead_letter(name, failed_at=failed_at))
    store.add(dead_letter("later", failed_at=failed_at + 1))

    seen = []
    for page in store.pages(page_size=2):
        for one in page:
            seen.append(one.job_id)
            store.remove([one.job_id])
    assert seen == names
    assert store.count() == 0


def test_a_page_reads_no_further_than_itself(private_redis: redis.Redis) -> None:
    store = DeadLetterStore(private_redis)
    for n in range(300):
        store.add(dead_letter(f"job-{n:03}", age=300 - n))
    private_redis.set(LETTER_PREFIX + "job-250", "not JSON: fails if it is ever read")
    private_redis.config_resetstat()

    first = next(store.pages(page_size=100))

    assert [one.job_id for one in first] == [f"job-{n:03}" for n in range(100)]
    assert calls(private_redis, "zrange") == 1
    assert calls(private_redis, "mget") == 1


def test_old_records_load_and_new_fields_are_ignored() -> None:
    record = json.loads(dead_letter("old").to_json())
    del record["ambiguous_attempts"]
    assert DeadLetter.from_json(json.dumps(record)).ambiguous_attempts == 0
    record["field_of_a_later_release"] = 1
    assert DeadLetter.from_json(json.dumps(record)).job_id == "old"


def test_the_old_hash_is_migrated_before_a_stores_first_command(
    private_redis: redis.Redis,
) -> None:
    """Deployments have letters in the hash ``zapi-queue:dead`` (and its index entries)."""
    old = [dead_letter(f"old-{n}", age=600 - n) for n in range(4)]
    ancient = dead_letter("ancient", age=7200)
    for one in [*old, ancient]:
        record = json.loads(one.to_json())
        del record["ambiguous_attempts"]  # written before the field existed
        private_redis.hset(LEGACY_KEY, one.job_id, json.dumps(record))
        private_redis.zadd(INDEX_KEY, {one.job_id: one.failed_at})
    private_redis.config_resetstat()

    store = DeadLetterStore(private_redis, ttl=3600, max_letters=3)
    assert store.count() == 3  # the first call migrates

    assert not private_redis.exists(LEGACY_KEY)
    assert [kept.job_id for kept in store] == ["old-1", "old-2", "old-3"]
    assert store.get("old-3") == old[3]
    assert store.get("ancient") is None  # older than the TTL: not kept
    assert store.dropped() == 1  # old-0, beyond the cap of 3
    left = 3600 - (time.time() - old[3].failed_at)  # a TTL counted from its failure
    # Redis' clock and ours, and PTTL's rounding, may differ by a few milliseconds.
    assert left - 5 < private_redis.pttl(LETTER_PREFIX + "old-3") / 1000 <= left + 0.05
    assert private_redis.ttl(INDEX_KEY) > 0

    # Once per store (a process keeps one): its later commands do not scan again.
    store.add(dead_letter("new"))
    store.get("new")
    assert calls(private_redis, "hscan") == 1


def test_the_scripts_run_on_a_redis_without_script_effects_replication(
    strict_lua_redis: RedisServer,
) -> None:
    """Redis 6.2 with lua-replicate-commands off refuses a write after TIME unless the script
    asks for effects replication first (see tests/test_lua_compat.py)."""
    client = strict_lua_redis.client()
    store = DeadLetterStore(client, max_letters=1)
    store.add(dead_letter("a"))
    store.add(dead_letter("b"))
    assert store.count() == 1
    assert store.dropped() == 1
    client.close()


def test_defaults_are_the_settings_defaults() -> None:
    store = DeadLetterStore(redis.Redis())  # no command is sent
    defaults = Settings.model_construct()
    assert (store.ttl, store.max_letters) == (
        defaults.zapi_dead_letter_ttl,
        defaults.zapi_dead_letter_max,
    )
    assert store.ttl == 30 * 86_400
    assert store.max_letters == 100_000
    settings = Settings.model_construct(zapi_dead_letter_ttl=7200, zapi_dead_letter_max=10)
    configured = DeadLetterStore.from_settings(redis.Redis(), settings)
    assert (configured.ttl, configured.max_letters) == (7200, 10)


def test_letters_are_counted_by_error_type_through_replace_remove_cap_and_expiry(
    client: redis.Redis,
) -> None:
    store = DeadLetterStore(client, ttl=600, max_letters=4)
    store.add(dead_letter("a1", error_type="InvalidBodyError"))
    store.add(dead_letter("a2", error_type="InvalidBodyError"))
    store.add(dead_letter("b1", error_type="ZapiRejectedError"))
    assert store.count_by_type() == {"InvalidBodyError": 2, "ZapiRejectedError": 1}

    store.add(dead_letter("a2", error_type="DeliveryFailedError"))  # the same job, failed again
    assert store.count_by_type() == {
        "DeliveryFailedError": 1,
        "InvalidBodyError": 1,
        "ZapiRejectedError": 1,
    }
    store.remove(["b1"])
    assert store.count_by_type() == {"DeliveryFailedError": 1, "InvalidBodyError": 1}

    for name in ("c1", "c2", "c3"):  # the cap (4) drops the oldest: a1, then a2
        store.add(dead_letter(name, error_type="AttemptsExhaustedError"))
    assert store.count_by_type() == {"AttemptsExhaustedError": 3, "DeliveryFailedError": 1}
    assert sum(store.count_by_type().values()) == store.count() == 4

    store.add(dead_letter("old", age=601, error_type="InvalidBodyError"))  # older than the TTL
    assert "InvalidBodyError" not in store.count_by_type()
    assert_every_key_expires(client, "zapi-queue:dead:type*")


def test_error_types_beyond_the_cap_count_as_other(capped: DeadLetterStore) -> None:
    for index, kind in enumerate(["A", "B", "C", "D", "A"]):
        capped.add(dead_letter(f"j{index}", error_type=f"{kind}Error"))
    assert capped.count_by_type() == {"AError": 2, "BError": 1, "other": 2}


def for_instance(job_id: str, alias: object, **fields: Any) -> DeadLetter:
    kwargs = {} if alias is None else {"instance": alias}
    return dead_letter(job_id, kwargs=kwargs, **fields)


def test_letters_are_counted_by_instance_through_replace_remove_cap_and_expiry(
    client: redis.Redis,
) -> None:
    store = DeadLetterStore(client, ttl=600, max_letters=4)
    store.add(for_instance("a1", None))  # no instance named: the default one
    store.add(for_instance("a2", "shop-b"))
    store.add(for_instance("a3", "shop-b"))
    assert store.count_by_instance() == {"default": 1, "shop-b": 2}

    store.add(for_instance("a3", "shop-b", error_type="DeliveryFailedError"))  # failed again
    assert store.count_by_instance() == {"default": 1, "shop-b": 2}
    store.remove(["a2"])
    assert store.count_by_instance() == {"default": 1, "shop-b": 1}

    for name in ("c1", "c2", "c3"):  # the cap (4) drops the oldest: a1, then a3
        store.add(for_instance(name, "shop-c"))
    assert store.count_by_instance() == {"shop-c": 3, "shop-b": 1}
    assert sum(store.count_by_instance().values()) == store.count() == 4

    store.add(for_instance("old", "shop-d", age=601))  # older than the TTL: not kept
    assert "shop-d" not in store.count_by_instance()
    assert_every_key_expires(client, "zapi-queue:dead:instance*")


def test_names_that_are_not_aliases_or_beyond_the_cap_count_as_other(
    client: redis.Redis, capped: DeadLetterStore
) -> None:
    for index, alias in enumerate(["a", "b", "c", "a", "Not An Alias", 7, "x" * 41]):
        capped.add(for_instance(f"j{index}", alias))
    # 7 is not a string: the job went to the default instance (DeadLetter.instance).
    assert capped.count_by_instance() == {"a": 2, "b": 1, "(other)": 4}
    capped.remove(["j2", "j4"])
    assert capped.count_by_instance() == {"a": 2, "b": 1, "(other)": 2}
    assert len(list(client.scan_iter(match="zapi-queue:dead:instance:*"))) == 3


def test_migrated_letters_are_counted_by_instance(client: redis.Redis) -> None:
    old = for_instance("m1", "shop-b")
    client.hset(LEGACY_KEY, "m1", old.to_json())
    client.hset(LEGACY_KEY, "m2", "not json")
    store = DeadLetterStore(client, ttl=600)
    assert store.count_by_instance() == {"(other)": 1, "shop-b": 1}


def test_pages_resume_past_a_cursor(client: redis.Redis) -> None:
    from tasks.state.deadletter import cursor

    store = DeadLetterStore(client)
    letters = [dead_letter(f"job-{n}", age=10 - n) for n in range(5)]
    for letter in letters:
        store.add(letter)
    pages = store.pages(2, after=cursor(letters[1]))
    resumed = [letter.job_id for page in pages for letter in page]
    assert resumed == ["job-2", "job-3", "job-4"]
    assert [page for page in store.pages(after=cursor(letters[4]))] == []
