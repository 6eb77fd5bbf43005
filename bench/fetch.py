"""What reliable fetch costs: consuming from Redis with worker/transport.py vs kombu's stock one.

Both transports consume the same N messages from a fresh local Redis, one at a time with an ack
each (a worker with prefetch 1 does the same), in the same run. Printed per transport: messages
per second, and Redis commands per message (from ``INFO stats``, so every round trip counts).

    python -m bench.fetch --messages 5000
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import redis
from kombu import Connection

from devtools.redis_server import RedisServer
from worker.transport import Transport

QUEUE = "bench"
#: The stock transport, named as kombu's broker URL scheme names it.
STOCK = "redis"


@dataclass(frozen=True)
class FetchFigures:
    name: str
    messages: int
    seconds: float
    commands: int

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def commands_per_message(self) -> float:
        return self.commands / self.messages


def commands_processed(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def consume(url: str, transport: type[Transport] | str, messages: int) -> tuple[float, int]:
    """Publish ``messages``, then time consuming and acking them all; (seconds, commands)."""
    with Connection(url) as producer:
        queue = producer.SimpleQueue(QUEUE)
        for n in range(messages):
            queue.put({"n": n})
        queue.close()
    client = redis.Redis.from_url(url)
    before = commands_processed(client)
    started = time.perf_counter()
    with Connection(url, transport=transport) as connection:
        queue = connection.SimpleQueue(QUEUE)
        for _ in range(messages):
            queue.get(timeout=10).ack()
        queue.close()
    seconds = time.perf_counter() - started
    commands = commands_processed(client) - before - 1  # the INFO call itself
    client.close()
    return seconds, commands


def run(messages: int, rounds: int) -> list[FetchFigures]:
    figures = []
    with RedisServer() as server:
        url = f"{server.url}/0"
        consume(url, Transport, 200)  # warm-up: imports, scripts loaded
        for name, transport in (("kombu stock (BRPOP)", STOCK), ("reliable fetch", Transport)):
            best = min(consume(url, transport, messages) for _ in range(rounds))
            figures.append(FetchFigures(name, messages, *best))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs each")
    args = parser.parse_args()
    stock, reliable = run(args.messages, args.rounds)
    print(f"{'transport':<22}{'messages/s':>12}{'Redis commands/message':>24}")
    for row in (stock, reliable):
        print(f"{row.name:<22}{row.per_second:>12.0f}{row.commands_per_message:>24.2f}")
    print(f"reliable / stock: {reliable.per_second / stock.per_second:.2f}x messages/s")


if __name__ == "__main__":
    main()
