"""worker/green_redis.py in a gevent-patched child process (patching this one would patch the
whole test session): redis-py's zero-timeout readiness checks ask the OS, its waits stay
gevent's, and a real Redis still answers through the pool and a pub/sub wait."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from devtools.redis_server import RedisServer

CHILD = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import socket, sys, time
    import gevent, redis
    from redis._parsers import hiredis
    from worker import green_redis

    assert green_redis.install(), "not installed under gevent"
    green = monkey.get_original("select", "poll")  # the OS's; gevent's is select.poll now
    import select
    assert hiredis.select is not select and hiredis.select.POLLIN == select.POLLIN

    # A zero-timeout check on an idle socket: False without a hub switch; with data: True.
    a, b = socket.socketpair()
    switched = []
    gevent.spawn(lambda: switched.append(True))
    assert hiredis._socket_can_read(a, 0) is False
    assert switched == [], "a zero-timeout poll switched to the hub"
    b.sendall(b"x")
    assert hiredis._socket_can_read(a, 0) is True

    # A wait with a timeout still yields to other greenlets while it waits.
    c, d = socket.socketpair()
    ran = []
    gevent.spawn(lambda: ran.append(True))
    started = time.monotonic()
    assert hiredis._socket_can_read(c, 0.2) is False
    assert ran == [True], "a poll with a timeout blocked the hub"
    assert time.monotonic() - started >= 0.15

    # Through a real Redis: pooled commands, and a pub/sub wait that other greenlets outlive.
    client = redis.Redis.from_url(sys.argv[1])
    for n in range(50):
        client.set(f"green:{n}", n, ex=60)
    assert [int(v) for v in client.mget([f"green:{n}" for n in range(50)])] == list(range(50))
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("green:channel")
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(10)])
    started = time.monotonic()
    while time.monotonic() - started < 0.3:  # the first answer is the (ignored) subscription
        assert pubsub.get_message(timeout=0.3) is None
    assert len(ticks) == 10, ticks
    gevent.spawn_later(0.05, client.publish, "green:channel", "hello")
    message = pubsub.get_message(timeout=2.0)
    assert message is not None and message["data"] == b"hello", message
    ticker.join()
    print("ok")
    """
)


def test_zero_wait_checks_under_gevent_against_a_real_redis() -> None:
    with RedisServer() as server:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, server.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_not_installed_without_gevent_patching() -> None:
    child = "from worker import green_redis; print(green_redis.install())"
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
