"""The key registry (tasks/state/keys.py): every key name the code builds is registered, with a
TTL or a cap and a real setting, and the "data kept" table rendered from it shows every one."""

from __future__ import annotations

import subprocess
import sys

import redis

from config import Settings
from tasks.contract.ordering import order_keys
from tasks.state import keys
from tasks.state.deliveries import DeliveryBook
from tasks.state.idempotency import IdempotencyStore
from tasks.state.keys import KEYS, PRIORITY_SEP, data_kept_table, registered
from tasks.state.orders import OrderLines
from tasks.state.ratelimit import RateLimiter, hold_key
from tasks.state.sends import sent_counter


def names_the_code_builds() -> list[str]:
    """Key names as the stores build them (a client that never connects: they only name)."""
    client = redis.Redis(port=1)
    lines = OrderLines(client, instance_id="abc", ttl=1, absence=0, settle=0)
    store = IdempotencyStore(client, instance_id="abc", ttl=1, wait_lease=1, send_lease=1)
    limiter = RateLimiter(client, instance_id="abc", rate=1)
    deliveries = DeliveryBook(client, instance_id="abc", ttl=1)
    return [
        *lines.keys("ORD:1"),
        *store.keys("body:ff"),
        *limiter.reserve_keys("5511999990000"),
        limiter.pause_key,
        limiter.strikes_key,
        hold_key("abc"),
        sent_counter("abc", 120.0)[0],
        deliveries.key("MSG:1"),
        *order_keys("abc", "ORD-2"),
    ]


def test_every_name_the_stores_build_is_registered() -> None:
    for name in names_the_code_builds():
        entry = registered(name)
        assert entry is not None, name
        assert entry.expires or entry.cap is not None, name


def test_every_exported_name_and_prefix_has_an_entry() -> None:
    constants = {
        name: value
        for name, value in vars(keys).items()
        if name.isupper() and (name.endswith("_KEY") or name.endswith("_PREFIX"))
    }
    assert len(constants) >= 35
    for name, value in constants.items():
        patterns = [entry.pattern for entry in KEYS]
        assert any(pattern.startswith(value) for pattern in patterns), name


def test_each_key_matches_its_own_entry_first() -> None:
    """The registry lists exact names before families: a key name finds its own entry."""
    for entry in KEYS:
        example = entry.pattern.replace("{", "x").replace("}", "x")
        assert registered(example) is entry, entry.pattern
    processing = f"{keys.LEASES_KEY}.celery.host.123.abcdef"
    assert registered(processing) is not registered(keys.SOURCES_KEY)
    assert registered(f"{keys.QUEUE}{PRIORITY_SEP}3") is not registered(keys.QUEUE)
    assert registered("zapi-queue:unknown") is None
    assert registered("celery-task-meta-1") is not None


def test_every_key_without_a_ttl_has_a_cap_and_every_setting_exists() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for entry in KEYS:
        if not entry.expires:
            assert entry.cap is not None, entry.pattern
        for setting in entry.setting.split(", "):
            assert setting == "-" or setting in fields, (entry.pattern, setting)
        assert entry.redis in ("state", "broker", "results", "every"), entry.pattern


def test_the_data_kept_table_shows_every_registered_key() -> None:
    table = data_kept_table()
    rows = table.splitlines()
    assert rows[0].startswith("| key | what | personal data | kept |")
    assert len(rows) == len(KEYS) + 2
    for entry in KEYS:
        shown = entry.pattern.replace(PRIORITY_SEP, "\\x06\\x16")
        assert f"`{shown}`" in table, entry.pattern
        if entry.setting != "-":
            assert entry.setting in table
    assert "ZAPI_DEAD_LETTER_MAX" in table
    assert "at most 1,000" in table


def test_the_table_prints_from_the_command_line() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "tasks.state.keys"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed == data_kept_table()
