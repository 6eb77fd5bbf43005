"""The two halves of Redis URLs: the settings' rules (config/redis_url.py) and the client a URL
means (tasks/contract/redis_url.py, which kombu's reader serves). A ``sentinel://`` URL the
settings accept must reach the same Sentinels, database and login as the rules read in it.
Pure: the clients are built, never connected."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.redis_url import SentinelURL, unsupported
from tasks.contract.redis_url import SentinelOptions, redis_client

HOSTS = st.from_regex(
    r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,6})?|10\.0\.[0-9]{1,2}\.[0-9]{1,3}", fullmatch=True
)
#: What a login may hold once percent-encoded: the URL's own delimiters included.
LOGINS = st.none() | st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
)


def sentinel_url(
    hosts: list[tuple[str, int | None]], db: int | None, user: str | None, password: str | None
) -> str:
    auth = ""
    if user is not None or password is not None:
        auth = quote(user or "", safe="") + (f":{quote(password, safe='')}" if password else "")
        auth += "@"
    chunks = []
    for index, (host, port) in enumerate(hosts):
        address = host + (f":{port}" if port else "")
        path = f"/{db}" if db is not None and index == 0 else ""
        chunks.append(f"sentinel://{auth if index == 0 else ''}{address}{path}")
    return ";".join(chunks)


def read_by_the_client(url: str) -> dict[str, Any]:
    """What the client built for ``url`` connects to."""
    pool = redis_client(url, SentinelOptions("mymaster", "sentinels-pw")).connection_pool
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    kwargs = pool.connection_kwargs
    return {
        "sentinels": tuple((s["host"], s["port"]) for s in sentinels),
        "sentinel_passwords": {s.get("password") for s in sentinels},
        "db": kwargs["db"],
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "master": pool.service_name,
    }


@given(
    hosts=st.lists(st.tuples(HOSTS, st.none() | st.integers(1, 65535)), min_size=1, max_size=3),
    db=st.none() | st.integers(0, 15),
    user=LOGINS,
    password=LOGINS,
)
def test_the_client_reaches_what_the_rules_read(
    hosts: list[tuple[str, int | None]], db: int | None, user: str | None, password: str | None
) -> None:
    url = sentinel_url(hosts, db, user, password)
    assert unsupported(url, sentinel_master="mymaster") is None
    rules = SentinelURL.parse(url)
    assert read_by_the_client(url) == {
        "sentinels": rules.sentinels,
        "sentinel_passwords": {"sentinels-pw"},
        "db": rules.db,
        "username": rules.username,
        "password": rules.password,
        "master": "mymaster",
    }


def test_one_server_is_redis_pys_reading() -> None:
    kwargs = redis_client(
        "rediss://:p%40ss@cache.internal:6380/4"
    ).connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "cache.internal",
        6380,
        4,
        "p@ss",
    )


def test_a_sentinel_url_without_its_master_is_refused_by_both() -> None:
    url = "sentinel://:pw-SECRET@h1:26379/0"
    assert unsupported(url) == "a sentinel:// URL needs REDIS_SENTINEL_MASTER"
    with pytest.raises(ValueError, match="REDIS_SENTINEL_MASTER") as raised:
        redis_client(url)
    assert "pw-SECRET" not in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"REDIS_SENTINEL_PASSWORD": "pw"}, None),
        ({"REDIS_SENTINEL_MASTER": "m"}, SentinelOptions("m")),
        ({"REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_PASSWORD": ""}, SentinelOptions("m")),
        (
            {"REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_PASSWORD": "pw"},
            SentinelOptions("m", "pw"),
        ),
    ],
)
def test_sentinel_options_from_the_environment(
    environ: dict[str, str], expected: SentinelOptions | None
) -> None:
    assert SentinelOptions.from_env(environ) == expected
