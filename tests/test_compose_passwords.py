"""The passwords docker-compose.yml hands out: any allowed one survives the URLs compose builds,
any other is refused at start (named, never echoed), and no shipped placeholder runs."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from config.passwords import URL_SAFE_PASSWORD
from config.settings import ConfigurationError, load_settings
from tests.compose_model import interpolate, load
from tests.test_compose import FILLED, password_of
from worker.flower_guard import refusal


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


def test_password_rules_hold_and_refuse_loudly() -> None:
    """Why the alphabet: an unencoded / cuts the host; the app refuses it, naming the variable
    and never echoing the value; placeholders refuse too (Redis, Flower, Grafana)."""
    with pytest.raises(ValueError, match="Port could not be cast"):
        redis.connection.parse_url("redis://:pa/ss@redis:6379/0")  # type: ignore[no-untyped-call]
    for bad in ("pa/ss", "p@ss", "p%41ss", "change-me", "p ss"):
        os.environ["REDIS_PASSWORD"] = bad
        try:
            with pytest.raises(ConfigurationError, match="REDIS_PASSWORD") as refused:
                load_settings()
            assert bad not in str(refused.value)
        finally:
            del os.environ["REDIS_PASSWORD"]
    assert "placeholder" in (refusal("0.0.0.0", ["admin:change-me"], None) or "")  # noqa: S104
    assert refusal("0.0.0.0", ["admin:s3cret-of-mine"], None) is None  # noqa: S104


@pytest.mark.parametrize(("password", "starts"), [("", False), ("change-me", False),
                         ("admin", False), ("graf-SECRET-3b", True)])  # fmt: skip
def test_grafana_refuses_an_empty_or_well_known_admin_password(
    compose: dict[str, Any], password: str, starts: bool
) -> None:
    entrypoint = compose["services"]["grafana"]["entrypoint"]
    script = interpolate(entrypoint[2], {}).replace("exec /run.sh", "exec true")
    ran = subprocess.run(
        ["sh", "-c", script, "run.sh"], env={"GF_SECURITY_ADMIN_PASSWORD": password},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (ran.returncode == 0) == starts
    if not starts:
        assert "GRAFANA_ADMIN_PASSWORD" in ran.stderr


@given(st.text(alphabet=st.sampled_from(sorted("abcXYZ019-._~")), min_size=1, max_size=40))
def test_any_allowed_password_round_trips_through_the_compose_urls(password: str) -> None:
    env = {**FILLED, "REDIS_PASSWORD": password}
    url = interpolate(load()["x-redis-env"]["CELERY_BROKER_URL"], env)
    assert password_of(url) == password
    assert URL_SAFE_PASSWORD.fullmatch(password)


#: Whatever an environment variable can hold (no NUL, no lone surrogate).
ENV_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1)


@given(ENV_TEXT.filter(lambda p: not URL_SAFE_PASSWORD.fullmatch(p)))
def test_any_other_password_is_refused_at_start_never_echoed(password: str) -> None:
    """As every process starts (load_settings): refused, named, the value never in the message."""
    os.environ["REDIS_PASSWORD"] = password
    try:
        with pytest.raises(ConfigurationError, match="REDIS_PASSWORD: may hold only") as refused:
            load_settings()
    finally:
        del os.environ["REDIS_PASSWORD"]
    if len(password.strip()) > 3:
        assert password not in str(refused.value)
