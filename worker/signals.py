"""Worker life-cycle hooks: refuse to start misconfigured, scrub logs, warn about an evicting
Redis, poll the instances' status, close the HTTP client."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from prometheus_client import start_http_server

from config import ConfigurationError, Settings, get_settings
from tasks.state.ratelimit import get_limiter
from tasks.state.store import close_redis
from tasks.zapi.client import close_client, get_client
from worker import transport
from worker.background import BackgroundThread
from worker.logging import OUR_LOGGER, install_redaction, use_json_format
from worker.queue_reconciler import QueueReconciler
from worker.redis_checks import warn_if_evicting
from worker.redis_marker import RedisWatch
from worker.status_poller import StatusPoller

#: This worker's background threads, started when it is ready, stopped at its shutdown.
_background: list[BackgroundThread] = []


@celeryd_init.connect
def refuse_to_start_without_credentials(**_: Any) -> None:
    """A worker without Z-API credentials would fail every job; stop it before it takes any.

    Celery swallows exceptions raised by signal receivers, so this exits explicitly.
    """
    try:
        problem = startup_problem(get_settings())
    except ConfigurationError as exc:
        problem = str(exc)
    if problem is not None:
        print(f"zapi-queue: cannot start the worker: {problem}", file=sys.stderr)
        raise SystemExit(2)


@celeryd_init.connect
def fetch_reliably(**_: Any) -> None:
    """The worker's broker connections use our transports (reliable fetch, leases), whichever
    of its URLs kombu connects to. Only in the worker: other processes (Flower, the CLI, a
    producer) publish, and kombu's own transports do that as well."""
    transport.register()


def startup_problem(settings: Settings) -> str | None:
    """Why a worker with these settings could not send, or None."""
    # The single-instance variables, unless ZAPI_INSTANCES alone configures the fleet.
    if settings.zapi_instance_id is not None or not settings.instances():
        try:
            settings.zapi_credentials()
        except ConfigurationError as exc:
            return str(exc)
    return settings.instances_problem()


@after_setup_logger.connect
@after_setup_task_logger.connect
def scrub_secrets_from_logs(logger: logging.Logger, **_: Any) -> None:
    install_redaction(logger)
    try:
        settings = get_settings()
    except ConfigurationError:
        return  # the worker refuses to start, saying why
    # Our own loggers keep their level under Celery's (WARNING by default): a record they let
    # through reaches the root handlers, which do not filter by level.
    logging.getLogger(OUR_LOGGER).setLevel(settings.zapi_log_level)
    if settings.zapi_log_format == "json":
        use_json_format(logger)


@worker_ready.connect
@worker_process_init.connect
def open_connections(**_: Any) -> None:
    """Build the HTTP client (TLS context) and the limiter before the first job, not during it.

    Built lazily, the first jobs would all wait for that set-up and then send together.
    """
    for instance in get_settings().instances().values():
        get_client(instance)
        get_limiter(instance)


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """This worker's counters (tasks/metrics.py) on ZAPI_METRICS_PORT, if set. The shipped
    threads pool runs every job in this process, so one registry sees them all."""
    settings = get_settings()
    if settings.zapi_metrics_port is not None:
        start_http_server(settings.zapi_metrics_port, addr=settings.zapi_metrics_host)


@worker_ready.connect
def watch_instances(**_: Any) -> None:
    """Hold a disconnected instance's sends even when its callbacks do not reach us
    (worker/status_poller.py; ZAPI_STATUS_POLL_INTERVAL=0 turns it off), and take old news out
    of a disconnected phone's queue at Z-API before it fires (worker/queue_reconciler.py;
    ZAPI_QUEUE_RECONCILE_INTERVAL=0 turns it off)."""
    settings = get_settings()
    for thread in (StatusPoller, QueueReconciler):
        started = thread(settings, settings.instances())
        _background.append(started)
        started.start()


@worker_ready.connect
def watch_redis_data(**_: Any) -> None:
    """Notice a Redis that lost its data under a running fleet (worker/redis_marker.py)."""
    watch = RedisWatch(get_settings())
    _background.append(watch)
    watch.start()


@worker_shutdown.connect
def stop_background_threads(**_: Any) -> None:
    for thread in _background:
        thread.stop()


@worker_ready.connect
def warn_if_redis_evicts(**_: Any) -> None:
    """An evicting Redis drops queued jobs and idempotency records without a word: say so once,
    at start-up, where an operator looks (a WARNING, not a refusal: a managed Redis may not
    let us change it at once)."""
    warn_if_evicting(get_settings())


@worker_shutdown.connect
@worker_process_shutdown.connect
def close_connections(**_: Any) -> None:
    close_client()
    close_redis()
