"""Lua scripts called by name (tasks/state/scripts.py): a composed script's keys and arguments are
placed by the builder, and a call that names them wrong fails before Redis runs anything."""

from __future__ import annotations

import importlib.resources
from typing import Any

import pytest
import redis

from tasks.state import deliveries, idempotency, orders, ratelimit, turns
from tasks.state.idempotency import IdempotencyStore
from tasks.state.orders import OrderLines, Turn
from tasks.state.ratelimit import RateLimiter
from tasks.state.scripts import Library, Script, ScriptCallError, lua_literal
from tasks.state.turns import Turns
from tests.conftest import empty_db_fixture
from worker import fetch_scripts

LUA_FILES = {
    "tasks.state": [
        "book.lua",
        "deadletter.lua",
        "deliveries.lua",
        "idempotency.lua",
        "instances.lua",
        "orders.lua",
        "ratelimit.lua",
        "turns.lua",
        "webhook_stats.lua",
    ],
    "worker": ["fetch_scripts.lua", "redis_marker.lua", "results.lua"],
}


client = empty_db_fixture(3)


def turns_of(client: redis.Redis, instance: str) -> Turns:
    lines = OrderLines(client, instance_id=instance, ttl=600, absence=600, settle=0)
    store = IdempotencyStore(client, instance_id=instance, ttl=600, wait_lease=5, send_lease=5)
    return Turns(client, lines, store, RateLimiter(client, instance_id=instance, rate=100))


def test_the_lua_files_are_package_data() -> None:
    for package, names in LUA_FILES.items():
        for name in names:
            assert importlib.resources.files(package).joinpath(name).is_file(), (package, name)


def test_a_script_beside_its_store_is_read_from_the_file_named_after_the_module() -> None:
    options: dict[str, Any] = {
        "keys": ("counts",),
        "args": ("outcome", "kind", "cap", "ttl", "amount"),
    }
    beside = Script.beside("tasks.state.webhook_stats", "count", **options)
    assert beside.name == "webhook_stats.lua:count"
    assert beside.text == Script.of("tasks.state", "webhook_stats.lua", "count", **options).text


def test_the_composed_script_binds_every_key_and_argument_by_name() -> None:
    script = turns._ENTER_AND_START
    assert script.keys[:3] == ("line", "jobs", "state")
    assert script.keys[3:6] == ("idem_reply", "idem_claim", "idem_sent")
    assert script.keys[6:] == ("rate_schedule", "rate_hold", "rate_recipient", "counter")
    assert script.args[:7] == orders.LIBRARY.params("enter", prefix="enter_")
    assert "local counter = KEYS[10]" in script.text
    assert f"local mark_counter_ttl = ARGV[{len(script.args)}]" in script.text
    # The arguments come after the libraries: a library function cannot capture one.
    assert script.text.index("local enter_job = ARGV[1]") > script.text.index("local function")
    assert "KEYS[" not in orders.LIBRARY.source
    assert "ARGV[" not in orders.LIBRARY.source


def test_a_call_that_misses_or_adds_a_name_fails_before_redis_is_asked() -> None:
    script = orders.SCRIPTS["park"]
    keys = {"line": "l", "jobs": "j", "state": "s"}
    with pytest.raises(ScriptCallError, match="missing seconds"):
        script.positions({**keys, "job": "a"})
    with pytest.raises(ScriptCallError, match=r"unexpected second$"):
        script.positions({**keys, "job": "a", "seconds": 1, "second": 1})
    assert script.positions({**keys, "job": "a", "seconds": 1}) == (["l", "j", "s"], ["a", 1])


def test_a_store_argument_list_of_the_wrong_length_fails_loudly(client: redis.Redis) -> None:
    """The mismatch the old hand-kept offsets let through: one argument too few or too many."""
    book = turns_of(client, "i-mismatch")
    args = book.lines.enter_args("job-1", sequence=None, settles=False, waited_long=False)
    with pytest.raises(ScriptCallError, match=r"enter\(\) takes 7 values"):
        book.enter_and_start("ORD-1", "key-1", "owner-1", args[:-1], "5511999990000")
    with pytest.raises(ScriptCallError, match=r"enter\(\) takes 7 values"):
        book.enter_and_start("ORD-1", "key-1", "owner-1", [*args, "extra"], "5511999990000")
    assert client.dbsize() == 0  # nothing ran
    entry, start = book.enter_and_start("ORD-1", "key-1", "owner-1", args, "5511999990000")
    assert entry.turn is Turn.GO
    assert start is not None
    assert start.sending is not None


def test_each_store_gives_its_lua_functions_exactly_their_arguments(client: redis.Redis) -> None:
    book = turns_of(client, "i-arity")
    lines, store, limiter = book.lines, book.store, book.limiter
    enter = lines.enter_args("j", sequence=3, settles=True, waited_long=False)
    assert len(enter) == len(orders.LIBRARY.params("enter"))
    assert len(lines.delivered_args("j", "shipped", "paid", None)) == len(
        orders.LIBRARY.params("delivered")
    )
    assert len(lines.keys("o")) == len(orders.LIBRARY.keys)
    assert len(store.keys("k")) == len(idempotency.LIBRARY.keys)
    _, marking = store.before_send_args("owner", 0.0)
    assert len(marking) == len(idempotency.LIBRARY.params("mark_sent", without=["counter"]))
    assert len(limiter.reserve_keys("5511")) == len(ratelimit.LIBRARY.keys)
    assert len(limiter.reserve_args("5511")) == len(
        ratelimit.LIBRARY.params("reserve_slot", without=["now"])
    )
    assert len(deliveries.LIBRARY.params("link")) == 5


def test_a_misspelled_name_in_a_body_is_refused_by_redis(client: redis.Redis) -> None:
    script = Script("typo", "return {jobb}", args=("job",)).register(client)
    with pytest.raises(redis.ResponseError, match="jobb"):
        script(job="x")


def test_names_that_would_collide_or_shadow_are_refused() -> None:
    library = Library("lib", "local function f(a) return a end\n", keys=("line",))
    with pytest.raises(ValueError, match="'line' is named twice"):
        Script("twice", "return 1", keys=("line",), libraries=[library])
    with pytest.raises(ValueError, match="'now' is the prelude's own"):
        Script("now", "return 1", args=("now",))
    with pytest.raises(ValueError, match="'end' is not a usable name"):
        Script("keyword", "return 1", args=("end",))
    with pytest.raises(ValueError, match=r"no local function g\(\)"):
        library.params("g")


def test_rests_and_constants(client: redis.Redis) -> None:
    script = Script(
        "rest",
        "return {first, rest_from, #KEYS, ARGV[tail_from], NAME}",
        keys=("first",),
        rest_keys="rest",
        args=("one",),
        rest_args="tail",
        constants={"NAME": "it's"},
    ).register(client)
    assert script(first="a", rest=["b", "c"], one="1", tail=["t"]) == [b"a", 2, 3, b"t", b"it's"]
    with pytest.raises(ScriptCallError, match="rest must be a sequence"):
        script(first="a", rest="bc", one="1")
    assert lua_literal("a'b\\c") == "'a\\039b\\092c'"


def test_the_fetch_scripts_start_with_the_keys_the_transport_names() -> None:
    """The transport calls the fetch scripts by name (worker/fetch_base.py ``_run``), the six
    keys they share given by ``library_keys``: those are the library's, first in every script
    (TAKE composes no library)."""
    shared = fetch_scripts.library_keys(unacked="unacked", index="unacked_index")
    assert set(shared) == set(fetch_scripts.LIBRARY.keys)
    for name, script in fetch_scripts.FETCH_SCRIPTS.items():
        assert script.keys[:6] == fetch_scripts.LIBRARY.keys, name
        assert fetch_scripts.SCRIPTS[name] == script.text
