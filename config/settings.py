"""Settings, validated once per process, with messages an operator can act on.

Every setting is an environment variable (names are part of the public contract). The
Z-API credentials are optional here because Flower, producers and the CLI load the same
settings without needing them; the worker asks for them through :meth:`Settings.zapi_credentials`
at start-up and refuses to start, naming the missing variable, when one is absent.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.instances import (
    DEFAULT_ALIAS,
    Instance,
    InstanceEntry,
    client_token_problem,
    configured_instances,
    parse_instances,
)
from config.lifecycle import LifecycleSettings
from config.passwords import url_password_problem
from config.redis_url import passwords, unsupported
from config.scaling import ScalingSettings
from config.secret_files import SecretFileError, SecretFilesSource

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Results in database 1, as the docs, .env.example and docker-compose.yml have it: a producer
#: following them reads the results the workers write.
DEFAULT_RESULT_BACKEND = "redis://127.0.0.1:6379/1"


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


@dataclass(frozen=True, slots=True)
class ZapiCredentials:
    """What a request to one Z-API instance needs. Its repr never shows the secrets."""

    instance_id: str
    instance_token: SecretStr
    client_token: SecretStr

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never be printed, for log and error redaction."""
        return (self.instance_token.get_secret_value(), self.client_token.get_secret_value())


class Settings(LifecycleSettings, ScalingSettings):
    """All of zapi-queue's settings. Field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )
    _entries: dict[str, InstanceEntry] = PrivateAttr(default_factory=dict)
    _instances: dict[str, Instance] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then ``<VAR>_FILE`` secrets (config/secret_files.py), then .env."""
        return (
            init_settings,
            env_settings,
            SecretFilesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    # Celery transport.
    celery_broker_url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    """The Redis broker (6.2 or later) jobs are queued in: ``redis://``, ``rediss://`` (TLS, the
    server's certificate verified) or ``sentinel://h1:26379/0;sentinel://h2:26379/0`` (Redis
    Sentinel, with REDIS_SENTINEL_MASTER); any other scheme is refused at start-up."""
    celery_result_backend: SecretStr = SecretStr(DEFAULT_RESULT_BACKEND)
    """Where jobs' results and errors are stored, for producers to read (database 1 of the
    broker's Redis by default, as the examples, .env.example and docker-compose.yml have it)."""
    celery_result_expires: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    """Seconds a job's result (Z-API's reply or the error) stays readable."""

    # Z-API.
    zapi_base_url: HttpUrl = HttpUrl("https://api.z-api.io")
    """Z-API's base URL (the fake Z-API's, ``http://127.0.0.1:8080``, in development)."""
    zapi_instance_id: str | None = None
    """The Z-API instance (WhatsApp number) the instance ``default`` sends from; required by
    the worker unless ZAPI_INSTANCES defines every instance."""
    zapi_instance_token: SecretStr | None = None
    """That instance's token (it goes in the URL path, so it is redacted from every log line
    and error); required with ZAPI_INSTANCE_ID."""
    zapi_client_token: SecretStr | None = None
    """The account's security token, sent as the ``Client-Token`` header; required by the
    worker with ZAPI_INSTANCE_ID, and by ZAPI_INSTANCES entries without their own."""
    zapi_rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 5.0
    """Sends per second per Z-API instance, shared by every worker."""
    zapi_rate_burst: Annotated[int, Field(ge=1, le=1000)] = 1
    """Sends allowed back to back before the spacing of 1 / ZAPI_RATE_LIMIT applies."""
    zapi_rate_max_wait: Annotated[float, Field(ge=0, le=60)] = 10.0
    """Longest a worker thread sleeps for its slot; a later slot re-schedules the job instead.

    A sleeping thread costs little; a re-scheduled job costs a publish, a state write and an
    event, and many of them at once (a backlog arriving) delay the sends that are due."""
    zapi_recipient_interval: Annotated[float, Field(ge=0, le=3600)] = 0.0
    """Minimum seconds between two sends to the same phone; 0 turns pacing off."""
    zapi_state_redis_url: SecretStr | None = None
    """Redis for the rate schedule, idempotency records and dead letters (default: the broker)."""
    redis_sentinel_master: str | None = None
    """The master the Sentinels of ``sentinel://`` URLs monitor (their ``sentinel monitor``
    name); required by such a URL."""
    redis_sentinel_password: SecretStr | None = None
    """The Sentinels' own password (their ``requirepass``), if they have one; the master's is
    the one in the URL."""
    redis_password: SecretStr | None = None
    """The password docker-compose.yml gives Redis and writes, unencoded, into the Redis URLs it
    builds. Read only to refuse at start what those URLs cannot carry: a character other than
    letters, digits and ``- . _ ~``, or a placeholder such as ``change-me``."""
    zapi_idempotency_ttl: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    """Seconds a delivered job's reply is remembered, so a repeat is not sent again."""
    celery_visibility_timeout: Annotated[int, Field(ge=2, le=86_400)] = 900
    """Seconds before Redis hands an unacknowledged job to another worker: the backstop of crash
    recovery, and the bound on how far ahead a job may be re-scheduled."""
    celery_worker_lease: Annotated[int, Field(ge=3, le=86_400)] = 60
    """Seconds a worker may stay silent (no lease renewal in Redis) before the other workers
    take its jobs over: crash recovery time. Renewed every few seconds by a live worker, also
    during a warm shutdown; at least one request's deadline (ZAPI_CONNECT_TIMEOUT +
    ZAPI_TIMEOUT)."""
    zapi_max_attempts: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Total send attempts per job, the first one included. With the default backoff (a wait of
    up to ZAPI_RETRY_BACKOFF_MAX between attempts) the time bound, ZAPI_GIVE_UP_AFTER, is the
    one that ends a job first."""
    zapi_give_up_after: Annotated[float, Field(gt=0, le=30 * 86_400)] = 7200.0
    """Seconds after a job's first attempt when it is given up (a dead letter) if every attempt
    failed transiently or Z-API kept rate limiting it: the budget of a Z-API outage (2 h rides
    out a one-hour incident with room to spare)."""
    zapi_dead_letter_ttl: Annotated[int, Field(ge=3600, le=365 * 86_400)] = 30 * 86_400
    """Seconds a dead letter is kept for a look or a replay before Redis drops it."""
    zapi_dead_letter_max: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    """Most dead letters kept; beyond it the oldest are dropped (and counted)."""
    zapi_timeout: Annotated[float, Field(gt=0, le=300)] = 15.0
    """Seconds to wait for Z-API's answer before the attempt counts as a transient failure."""
    zapi_connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Seconds to establish a connection to Z-API; with ZAPI_TIMEOUT, the overall deadline of
    one request (waiting, connecting, writing and reading included)."""
    zapi_retry_backoff: Annotated[float, Field(gt=0, le=600)] = 2.0
    """Base of the exponential backoff, in seconds: attempt n waits up to base * 2**(n-1)."""
    zapi_retry_backoff_max: Annotated[float, Field(gt=0, le=3600)] = 300.0
    """Cap of one backoff wait, in seconds; a longer Retry-After is capped to it as well."""

    zapi_ordering: bool = True
    """Per-order ordering: one update of an order in flight at a time, in enqueue order, never
    backward (tasks/contract/ordering.py). Off (``ZAPI_ORDERING=off``) for raw throughput."""
    zapi_supersede: bool = False
    """Latest state wins (``ZAPI_SUPERSEDE=on``): an update still waiting when a newer one of its
    order and field is in line is not sent (``SupersededError``); per job, the ``supersede``
    kwarg wins. Needs ordering (tasks/order_line.py)."""
    zapi_order_ttl: Annotated[int, Field(ge=3600, le=3 * 365 * 86_400)] = 90 * 86_400
    """Seconds an order (its snapshot from Z-API's webhook, its line, its last delivered state)
    is kept after its last update or webhook."""
    zapi_order_wait: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    """Seconds a short update (``messageId`` or ``orderRequestId`` and a status) waits for its
    order's webhook to reach the order book before it fails with UnknownOrderError."""
    zapi_persist_patience: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """Seconds a worker keeps trying to write what must not be lost (a delivered job's reply, a
    dead letter) before it re-schedules the job (a reply is carried along, never sent again) or
    hands it back to the broker."""
    zapi_delivery_ttl: Annotated[int, Field(ge=3600, le=365 * 86_400)] = 7 * 86_400
    """Seconds a delivered job's delivery state (sent, received, read, failed) is kept."""
    zapi_webhook_secret: SecretStr | None = None
    """The secret path segment of the webhook URL (``/webhooks/zapi/<secret>``): Z-API does not
    sign webhooks, so whoever knows it can post callbacks. Required by ``zapi-queue webhook``."""
    zapi_console_auth: SecretStr | None = None
    """The operator console's login, ``user:password`` (HTTP basic auth): required by
    ``zapi-queue console`` unless ``--trust-proxy-header`` names a proxy's user header; an empty
    value, a missing part or a placeholder password is refused at start."""
    zapi_webhook_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 200
    """Connections and requests at once the webhook receiver serves (uvicorn's
    ``limit_concurrency``); past it a new request is answered 503 (Z-API may try again)."""
    zapi_webhook_keep_alive: Annotated[int, Field(ge=1, le=300)] = 5
    """Seconds an idle connection to the webhook receiver is kept open between two requests
    (uvicorn's ``timeout_keep_alive``)."""
    zapi_webhook_body_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds a callback's body may take to arrive once its headers did; slower: 408."""

    zapi_instances: SecretStr | None = None
    """More Z-API instances, by alias (config/instances.py); ``ZAPI_INSTANCES_FILE`` too."""
    zapi_instance_alias: str | None = None
    """A name for the instance in logs and metrics (default: ZAPI_INSTANCE_ID)."""
    zapi_log_format: Literal["text", "json"] = "text"
    """"json" writes one JSON object per log line, with the attempt fields as keys."""
    zapi_metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Where each worker serves its Prometheus counters (``/metrics``); unset: not served."""
    zapi_metrics_host: str = "127.0.0.1"
    """The address the metrics are served on (``0.0.0.0`` in a container, for Prometheus)."""
    zapi_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of zapi-queue's own lines (one per send attempt, webhook callbacks), whatever
    Celery's ``--loglevel`` (WARNING unless given): the attempt log is on by default."""

    # Worker process.
    worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = 128
    """Sends in flight per worker container (greenlets; threads under ``WORKER_POOL=threads``).
    128: at a Z-API answering in 200 ms, 64 left a worker waiting, not busy (issue #34)."""
    worker_pool: Literal["gevent", "threads"] = "gevent"
    """The pool of ``celery -A worker worker``: ``gevent`` (every send of a process on one OS
    thread; the process re-starts itself as ``-P gevent``, so Celery monkey-patches first), or
    ``threads`` (no monkey-patching; more CPU per job). A ``-P`` on the command line wins."""
    zapi_instance_concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    """At most this many of a worker's threads busy with one Z-API instance (default: half of
    WORKER_CONCURRENCY when there are several instances, all of them when there is one), so that
    one hanging instance cannot hold them all."""
    zapi_disconnected_hold: Annotated[int, Field(ge=0, le=86_400)] = 600
    """Seconds at most an instance's sends are held after Z-API reports its phone disconnected
    (until it reports it connected again); 0 never holds (Z-API queues sends meanwhile)."""
    zapi_status_poll_interval: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    """Seconds between two ``GET .../status`` of each instance, made by one worker of the
    fleet (whichever takes the turn in Redis): a disconnected instance has its sends held as
    on a DisconnectedCallback, a connected one resumes. 0 turns polling off."""
    zapi_queue_reconcile_interval: Annotated[float, Field(ge=0, le=3600)] = 5.0
    """While an instance's phone is known disconnected, one worker of the fleet reads Z-API's
    own queue this often (and at once when a held update may supersede a queued one, and once
    more when the phone is back) and deletes our messages a later update made stale or
    superseded (tasks/reconcile.py). 0 turns reconciling off."""
    zapi_queue_pages: Annotated[int, Field(ge=1, le=1000)] = 34
    """The most pages of Z-API's queue (30 messages each) one reconciliation reads: 34 cover
    the 1,000 Z-API keeps. A longer queue is reconciled partially, and says so."""
    zapi_redis_watch_interval: Annotated[float, Field(ge=0, le=3600)] = 15.0
    """Seconds between two looks of each worker at the marker each Redis holds
    (worker/redis_marker.py): a marker gone means that Redis lost its data (restarted without
    persistence, flushed), which is logged at ERROR and shown by ``zapi-queue health``. 0 only
    writes the marker at start-up."""
    zapi_breaker_failures: Annotated[int, Field(ge=0, le=1000)] = 5
    """Transient failures of an instance in a row (in one worker) that pause its sends on every
    worker, like a 429 does; 0 turns the breaker off."""

    @field_validator("zapi_instance_id")
    @classmethod
    def _no_blank_instance(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _settings_work_together(self) -> Settings:
        """Refuse, with the rule, combinations under which a job could run twice."""
        half_visibility = self.celery_visibility_timeout / 2
        if self.zapi_retry_backoff_max > half_visibility:
            raise ValueError(
                "ZAPI_RETRY_BACKOFF_MAX must be at most half of CELERY_VISIBILITY_TIMEOUT "
                f"({half_visibility:g}s): a job waiting longer than the "
                "visibility timeout would be delivered to a second worker"
            )
        if self.longest_execution > half_visibility:
            raise ValueError(
                "ZAPI_RATE_MAX_WAIT + ZAPI_CONNECT_TIMEOUT + ZAPI_TIMEOUT "
                f"({self.longest_execution:g}s) must be at most half of CELERY_VISIBILITY_TIMEOUT "
                f"({half_visibility:g}s): a job still sleeping for its slot or sending would be "
                "delivered to a second worker"
            )
        if self.celery_worker_lease < self.request_deadline:
            raise ValueError(
                f"CELERY_WORKER_LEASE ({self.celery_worker_lease}s) must be at least "
                f"ZAPI_CONNECT_TIMEOUT + ZAPI_TIMEOUT ({self.request_deadline:g}s): a worker's "
                "jobs would be taken over while one of its requests may still be in flight"
            )
        return self

    @model_validator(mode="after")
    def _redis_urls_are_supported(self) -> Settings:
        """Refuse, at start-up, a broker or state URL zapi-queue cannot keep its promises on
        (config/redis_url.py says why)."""
        urls = {
            "CELERY_BROKER_URL": self.celery_broker_url,
            "ZAPI_STATE_REDIS_URL": self.zapi_state_redis_url,
            "CELERY_RESULT_BACKEND": self.celery_result_backend,
        }
        for name, secret in urls.items():
            if secret is None:
                continue
            problem = unsupported(
                secret.get_secret_value(),
                any_scheme=name == "CELERY_RESULT_BACKEND",
                sentinel_master=self.redis_sentinel_master,
            )
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
        return self

    @field_validator("redis_password")
    @classmethod
    def _password_fits_a_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse what the compose-built URLs cannot carry (config/passwords.py); empty: unset."""
        if value is None or not value.get_secret_value():
            return None
        if problem := url_password_problem(value.get_secret_value()):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _instances_are_valid(self) -> Settings:
        """Parse ZAPI_INSTANCES now, so that a bad entry stops the process at start."""
        raw = self.zapi_instances.get_secret_value() if self.zapi_instances else ""
        entries = parse_instances(raw) if raw.strip() else {}
        if DEFAULT_ALIAS in entries and self.zapi_instance_id is not None:
            raise ValueError(
                "ZAPI_INSTANCES: default: already defined by ZAPI_INSTANCE_ID (the single-"
                "instance variables are the instance 'default')"
            )
        self._entries = entries
        self._instances = configured_instances(self, entries)
        return self

    def instances(self) -> Mapping[str, Instance]:
        """Every configured instance by alias: ``default`` (the single-instance variables, when
        complete) and ZAPI_INSTANCES' entries. Built once: each job looks its instance up."""
        return self._instances

    def instances_problem(self) -> str | None:
        """What keeps a configured instance from sending, for the worker's start-up check."""
        return client_token_problem(self._entries, self.zapi_client_token)

    @property
    def request_deadline(self) -> float:
        """The longest one request to Z-API may take, connecting included: its overall deadline."""
        return self.zapi_connect_timeout + self.zapi_timeout

    @property
    def longest_absence(self) -> float:
        """The longest a job still alive goes unseen: a re-scheduling countdown, a crash
        recovery, then one execution (and a margin). An order's head unseen for longer is gone."""
        return self.max_countdown + self.celery_worker_lease + self.longest_execution + 60

    @property
    def longest_execution(self) -> float:
        """The longest one execution holds its job: the sleep for a rate slot, then the request."""
        return self.zapi_rate_max_wait + self.request_deadline

    @property
    def max_countdown(self) -> float:
        """Longest a job is re-scheduled ahead: half the visibility timeout (no double delivery)."""
        return self.celery_visibility_timeout / 2

    def secret_values(self) -> list[str]:
        """Every configured secret: the Z-API tokens and the Redis passwords in the URLs.

        Works on partial settings (a worker refusing to start still redacts its logs)."""
        tokens = [self.zapi_instance_token, self.zapi_client_token, self.zapi_webhook_secret]
        tokens += [self.zapi_console_auth, _password_of(self.zapi_console_auth)]
        tokens += [self.redis_sentinel_password, self.redis_password]
        for entry in getattr(self, "_entries", {}).values():
            tokens += [entry.instance_token, entry.client_token]
        urls = [self.celery_broker_url, self.celery_result_backend, self.zapi_state_redis_url]
        values = [secret.get_secret_value() for secret in tokens if secret is not None]
        values += [
            password for url in urls if url for password in passwords(url.get_secret_value())
        ]
        return [value for value in dict.fromkeys(values) if value]

    @property
    def state_redis_url(self) -> str:
        url = self.zapi_state_redis_url or self.celery_broker_url
        return url.get_secret_value()

    @property
    def instance_alias(self) -> str:
        return self.zapi_instance_alias or self.zapi_instance_id or "unset"

    @property
    def zapi_url(self) -> str:
        """Base URL without a trailing slash."""
        return str(self.zapi_base_url).rstrip("/")

    def zapi_credentials(self) -> ZapiCredentials:
        """The credentials a worker needs, or a ConfigurationError naming each missing one."""
        missing = [
            env
            for env, value in (
                ("ZAPI_INSTANCE_ID", self.zapi_instance_id),
                ("ZAPI_INSTANCE_TOKEN", self.zapi_instance_token),
                ("ZAPI_CLIENT_TOKEN", self.zapi_client_token),
            )
            if value is None or (isinstance(value, SecretStr) and not value.get_secret_value())
        ]
        if missing:
            raise ConfigurationError(
                "missing Z-API credentials: set "
                + ", ".join(missing)
                + " (see docs/configuration.md)"
            )
        assert self.zapi_instance_id is not None
        assert self.zapi_instance_token is not None
        assert self.zapi_client_token is not None
        return ZapiCredentials(
            self.zapi_instance_id, self.zapi_instance_token, self.zapi_client_token
        )


def _password_of(login: SecretStr | None) -> SecretStr | None:
    """The password of a ``user:password`` login (redacted alone too: it may be quoted alone)."""
    if login is None or ":" not in login.get_secret_value():
        return None
    return SecretStr(login.get_secret_value().partition(":")[2])


def load_settings() -> Settings:
    """Read the settings from the environment, turning pydantic's error into a short message."""
    try:
        return Settings()
    except SecretFileError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            ": ".join(
                part
                for part in (
                    ".".join(str(part) for part in error["loc"]).upper(),
                    error["msg"].removeprefix("Value error, "),
                )
                if part
            )
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
