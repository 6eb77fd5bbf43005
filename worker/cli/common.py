"""What every command shares: settings or a one-line error, Redis, times, the producer."""

from __future__ import annotations

import sys
import time
from typing import NoReturn

import click
import redis

from config import ConfigurationError, Settings, get_settings
from tasks.contract.producer import Producer
from tasks.contract.redaction import redact
from tasks.state.deadletter import DeadLetterStore
from tasks.state.store import connect


def fail(message: str) -> NoReturn:
    click.echo(f"zapi-queue: {message}", err=True)
    sys.exit(2)


def settings_or_exit() -> Settings:
    """The worker's settings, or a one-line error naming the bad variable."""
    try:
        return get_settings()
    except ConfigurationError as exc:
        fail(str(exc))


def dead_letter_store() -> DeadLetterStore:
    settings = settings_or_exit()
    return DeadLetterStore.from_settings(state_redis(settings), settings)


def when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def reachable(url: str) -> redis.Redis:
    """A client for the Redis at ``url`` that answered a ping, or a one-line error at once
    (Celery would retry for up to a minute before saying anything)."""
    client = connect(url, retries=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(f"cannot reach Redis at {redact(url)}: {type(exc).__name__}")
    return client


def state_redis(settings: Settings) -> redis.Redis:
    """A client for the state Redis that answers, or a one-line error."""
    return reachable(settings.state_redis_url)


def producer_or_exit() -> Producer:
    """A producer whose broker and result backend answered, or a one-line error."""
    settings = settings_or_exit()
    for url in (settings.celery_broker_url, settings.celery_result_backend):
        reachable(url.get_secret_value()).close()
    return Producer(
        broker_url=settings.celery_broker_url.get_secret_value(),
        result_backend=settings.celery_result_backend.get_secret_value(),
    )
