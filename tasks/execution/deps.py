"""What an execution works with, handed to it explicitly: the settings, the Redis client of our
own state, the dead letters, and per Z-API instance its client, rate limiter, in-flight guard
and stores.

In a worker they are the process's (:func:`production`: pooled clients and registered
scripts, made on first use and after a fork); a test builds its own (:meth:`InstanceDeps.build`
with a ``ZapiClient`` over ``httpx.MockTransport`` and a real Redis) and runs an execution
in-process, without a Celery worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis

from config import Settings, get_settings
from config.instances import Instance
from tasks.instance_guard import InstanceGuard, get_guard
from tasks.instances import instance_named
from tasks.per_process import PerInstance, PerProcess
from tasks.state.book import OrderBook, get_order_book
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import DeliveryBook
from tasks.state.idempotency import IdempotencyStore
from tasks.state.orders import OrderLines, get_order_lines
from tasks.state.ratelimit import RateLimiter, get_limiter
from tasks.state.repeats import RepeatBook
from tasks.state.store import get_redis
from tasks.state.supersedes import SupersedeBook
from tasks.state.turns import Turns
from tasks.zapi.client import ZapiClient, get_client

#: Margin of a claim beyond the wait or the request it covers: Redis round trips, a slow thread.
CLAIM_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class InstanceDeps:
    """One Z-API instance's collaborators. Its keys carry the instance's id, so each instance
    has its own records."""

    instance: Instance
    client: ZapiClient
    limiter: RateLimiter
    guard: InstanceGuard
    store: IdempotencyStore
    turns: Turns
    deliveries: DeliveryBook
    book: OrderBook

    @property
    def lines(self) -> OrderLines:
        return self.turns.lines

    @classmethod
    def build(
        cls,
        settings: Settings,
        client: redis.Redis,
        instance: Instance,
        *,
        zapi: ZapiClient,
        limiter: RateLimiter,
        guard: InstanceGuard,
        lines: OrderLines,
        book: OrderBook,
    ) -> InstanceDeps:
        """The stores an execution alone uses, made from the shared parts: the idempotency
        store (its leases sized from the settings and the client's deadline), the round trips
        over lines, store and limiter, and the delivery records."""
        store = IdempotencyStore(
            client,
            instance_id=instance.instance_id,
            ttl=settings.zapi_idempotency_ttl,
            wait_lease=settings.zapi_rate_max_wait + CLAIM_MARGIN,
            send_lease=zapi.deadline + CLAIM_MARGIN,
        )
        return cls(
            instance=instance,
            client=zapi,
            limiter=limiter,
            guard=guard,
            store=store,
            turns=Turns(client, lines, store, limiter),
            deliveries=DeliveryBook(
                client,
                instance_id=instance.instance_id,
                ttl=settings.zapi_delivery_ttl,
                history_ttl=settings.celery_result_expires,
            ),
            book=book,
        )


@dataclass(frozen=True, slots=True)
class Deps:
    """Everything one execution may call: ``of(instance)`` gives an instance's collaborators."""

    settings: Settings
    redis: redis.Redis
    dead_letters: DeadLetterStore
    of: Callable[[Instance], InstanceDeps]

    def instance(self, alias: object) -> Instance:
        """The configured instance ``alias`` names; UnknownInstanceError otherwise."""
        return instance_named(alias, self.settings)

    def repeats(self) -> RepeatBook:
        return RepeatBook(self.redis, ttl=self.settings.celery_result_expires)

    def supersedes(self) -> SupersedeBook:
        return SupersedeBook(self.redis, ttl=self.settings.celery_result_expires)


def _production_instance(instance: Instance) -> InstanceDeps:
    return InstanceDeps.build(
        get_settings(),
        get_redis(),
        instance,
        zapi=get_client(instance),
        limiter=get_limiter(instance),
        guard=get_guard(instance),
        lines=get_order_lines(instance),
        book=get_order_book(instance),
    )


_instances = PerInstance(_production_instance)
_deps = PerProcess(
    lambda: Deps(
        settings=get_settings(),
        redis=get_redis(),
        dead_letters=DeadLetterStore.from_settings(get_redis(), get_settings()),
        of=_instances.get,
    )
)


def production() -> Deps:
    """The worker process's collaborators, made on first use (after any fork)."""
    return _deps.get()
