"""What every command shares: settings or a one-line error, Redis, times, the producer.

Every error a command reports goes through :func:`fail`: one line on stderr, secrets and
phone-like digit runs masked, control characters escaped (a hostile job id cannot print a
second line), then exit 2. ``worker/cli/main.py`` lists the exit codes.
"""

from __future__ import annotations

import re
import sys
import time
from types import TracebackType
from typing import NoReturn

import click
import redis

from config import ConfigurationError, Settings, get_settings
from config.redis_url import url_problem
from tasks.contract.producer import Producer
from tasks.contract.redaction import mask_phone, redact
from tasks.state.deadletter import DeadLetterStore
from tasks.state.store import connect

#: Exit codes (the command group's help lists them).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FINISHED = 4
#: The output pipe closed early (``| head``): as a tool killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141

#: The longest error line printed; the rest is cut (a hostile input can be megabytes).
MAX_LINE = 600
#: A run of 8+ digits standing alone in free text may be a phone: masked as phones are
#: everywhere. Digits inside a word or joined by ``-`` (a job id's UUID) are not a phone.
_DIGIT_RUN = re.compile(r"(?<![\w-])\d{8,}(?![\w-])")


def one_line(message: str, secrets: list[str] | None = None) -> str:
    """``message`` fit to print: secrets, URL passwords and phone-like numbers masked,
    non-printable characters escaped, at most ``MAX_LINE`` characters."""
    if secrets is None:
        secrets = known_secrets()
    cleaned = _DIGIT_RUN.sub(lambda m: mask_phone(m[0]), redact(message, secrets))
    return printable(cleaned, MAX_LINE)


def printable(value: str, limit: int = 200) -> str:
    """A value echoed back (a job id, an order id) on one line, escaped and cut."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def known_secrets() -> list[str]:
    """The configured secrets (tokens, Redis passwords), or none when settings do not load."""
    try:
        return get_settings().secret_values()
    except Exception:  # noqa: BLE001 - any settings error: redact() still masks URL passwords
        return []


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"zapi-queue: {one_line(message)}", err=True)
    sys.exit(code)


#: Each Redis URL setting, and the settings attribute holding it.
URL_SETTINGS = {
    "CELERY_BROKER_URL": "celery_broker_url",
    "CELERY_RESULT_BACKEND": "celery_result_backend",
    "ZAPI_STATE_REDIS_URL": "zapi_state_redis_url",
}


def settings_or_exit() -> Settings:
    """The worker's settings, or a one-line error naming the bad variable (a Redis URL
    redis-py cannot read included: it would fail later with a traceback)."""
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        fail(str(exc))
    for name, attribute in URL_SETTINGS.items():
        secret = getattr(settings, attribute)
        problem = url_problem(secret.get_secret_value()) if secret is not None else None
        if problem is not None:
            fail(f"{name} {problem}; fix it in the environment or .env")
    return settings


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
        fail(
            f"cannot reach Redis at {redact(url)}: {type(exc).__name__}; check that it runs "
            "and the URL's host, port and password"
        )
    return client


class RedisClients:
    """One client per Redis URL for one command run, each opened when first asked for and all
    closed at the end (``with``): a run that reads the broker three times connects once."""

    def __init__(self, *, retries: int) -> None:
        self.retries = retries
        self._clients: dict[str, redis.Redis] = {}

    def __call__(self, url: str) -> redis.Redis:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = connect(url, retries=self.retries)
        return client

    def __enter__(self) -> RedisClients:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


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
