"""worker/redis_errors.py: the code of an error reply, from the session's real Redis (whichever
version ZAPI_TEST_REDIS_SERVER chose), for plain commands and for commands a script calls
(wrapped in a generic error before Redis 7, bare from 7 on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from devtools.ports import free_port
from devtools.redis_server import RedisServer
from worker.redis_errors import describe, error_code

#: A script that writes: refused as the command it calls would be.
WRITE = "redis.call('SET', KEYS[1], '1') return 1"


@pytest.fixture
def client(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = own_redis.client()
    client.flushall()
    try:
        yield client
    finally:
        client.config_set("maxmemory", 0)
        client.replicaof("NO", "ONE")
        client.close()


def refusal(call: Callable[[], Any]) -> redis.RedisError:
    with pytest.raises(redis.RedisError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("through", ["command", "script"])
def test_out_of_memory_is_oom_whether_a_command_or_a_script_was_refused(
    client: redis.Redis, through: str
) -> None:
    client.config_set("maxmemory", 1)  # noeviction: every write refused
    call = (
        (lambda: client.set("k", 1)) if through == "command" else lambda: client.eval(WRITE, 1, "k")
    )
    exc = refusal(call)
    assert error_code(exc) == "OOM", repr(exc)
    assert describe(exc).startswith("OOM: ")


@pytest.mark.parametrize("through", ["command", "script"])
def test_a_write_to_a_replica_is_readonly_whether_a_command_or_a_script(
    client: redis.Redis, through: str
) -> None:
    client.replicaof("127.0.0.1", free_port())  # a replica of nothing: refuses writes
    call = (
        (lambda: client.set("k", 1)) if through == "command" else lambda: client.eval(WRITE, 1, "k")
    )
    assert error_code(refusal(call)) == "READONLY"


def test_codes_redis_py_has_no_class_for_are_read_from_the_reply(client: redis.Redis) -> None:
    client.rpush("list", "a")
    assert error_code(refusal(lambda: client.get("list"))) == "WRONGTYPE"
    assert error_code(refusal(lambda: client.evalsha("0" * 40, 0))) == "NOSCRIPT"
    client.set("text", "not a number")
    assert error_code(refusal(lambda: client.incr("text"))) == "ERR"  # a generic error reply


def test_a_redis_6_script_error_gives_the_code_of_the_command_it_called() -> None:
    """The wording Redis 6.2 sends (as redis-py 8 parses it), so it is covered on any server."""
    exc = redis.ResponseError(
        "Error running script (call to f_64ac20e8d0a03aaa0eae00b63ee3347431b617df): "
        "@user_script:1: @user_script: 1: -OOM command not allowed when used memory > "
        "'maxmemory'.",
    )
    assert error_code(exc) == "OOM"
    assert error_code(redis.ResponseError("Error running script (call to f_1): oops")) == "ERR"


def test_what_is_no_error_reply_has_no_code() -> None:
    lost = redis.ConnectionError("Connection closed by server.")
    assert error_code(lost) is None
    assert describe(lost) == "ConnectionError: Connection closed by server."
    assert error_code(redis.AuthenticationError("invalid password")) is None
