"""Our Lua scripts read Redis' clock (TIME) and then write. Redis 6.2 configured with
``lua-replicate-commands no`` refuses that unless a script calls ``redis.replicate_commands()``
first; these tests run every such script on a server configured that way (Redis 7 and later
have no such option: there they run on a plain server, ``replicate_commands()`` included)."""

from __future__ import annotations

from kombu import Connection

from devtools.redis_server import RedisServer
from tasks.state.ratelimit import RateLimiter
from worker.fetch_scripts import LEASES_KEY
from worker.transport import Channel, Transport


def test_the_rate_limiter_scripts_run(strict_lua_redis: RedisServer) -> None:
    client = strict_lua_redis.client()
    limiter = RateLimiter(client, instance_id="lua", rate=10, recipient_interval=1.0)
    assert limiter.reserve("5511999999999").granted
    limiter.pace("5511999999999")
    limiter.penalize(None, rate_limited=True)
    assert limiter.check(0).cancelled  # a slot reserved before the pause
    client.close()


def test_the_reliable_fetch_scripts_run(strict_lua_redis: RedisServer) -> None:
    url = f"{strict_lua_redis.url}/0"
    with Connection(url) as producer:
        producer.SimpleQueue("lua").put({"n": 1})
    options = {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    with Connection(url, transport=Transport, transport_options=options) as consumer:
        queue = consumer.SimpleQueue("lua")
        message = queue.get(timeout=5)  # prepare, then claim
        assert message.payload == {"n": 1}
        message.ack()
        channel = consumer.default_channel
        assert isinstance(channel, Channel)
        channel.sweep_processing_lists()
        channel.renew_leases()
        channel._release_processing_lists()
    client = strict_lua_redis.client()
    assert client.zcard(LEASES_KEY) == 0  # released
    assert client.hlen("unacked") == 0  # acked
    client.close()
