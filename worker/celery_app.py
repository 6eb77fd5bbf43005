"""The Celery app and the shipped defaults a bare ``celery -A worker worker`` runs with.

Why these defaults:

* **gevent pool, 128 greenlets** (``WORKER_CONCURRENCY``): a worker spends its time waiting on
  Z-API, so one process keeps many sends in flight; the prefork default would send one request
  per process at a time. Greenlets keep them all on one OS thread: no GIL handed between
  threads at every short blocking call, so less CPU per job than threads and than asyncio
  (docs/benchmarks.md, issue #34). worker/pool_boot.py re-executes the command as ``-P
  gevent``, the only way Celery monkey-patches first; ``WORKER_POOL=threads`` keeps Celery's
  thread pool, with no patching.
* **late acks, reject on worker lost, prefetch multiplier 1**: a job is removed from Redis only
  once it finished (delivered, failed for good, or re-scheduled), so a killed worker loses nothing.
* **visibility timeout** above the longest retry countdown: Redis re-delivers an unacked message
  after it, and a countdown longer than it would be delivered twice.
* **reliable fetch** (``worker.transport``): kombu's Redis transport pops a message before it
  records it as unacked, and a worker killed in between loses it; ours moves it atomically.
  It serves ``redis://``, ``rediss://`` and ``sentinel://`` (Redis Sentinel) brokers alike.
* **JSON only**: producers in any language can enqueue, and nothing is unpickled.
* **task events on, in batches** (``worker.event_batching``): Flower needs every event; they are
  published a tenth of a second apart instead of one or two at a time.
"""

from __future__ import annotations

import ssl
import sys
from typing import Any

from celery import Celery

from config import ConfigurationError, Settings, get_settings
from config.redis_url import scheme_of
from tasks.contract.redis_url import SentinelOptions
from tasks.state.store import sentinel_of
from worker import results
from worker.consumer_heartbeat import ConsumerHeartbeat
from worker.drain import Drain
from worker.event_batching import BatchedEvents

#: Modules holding the tasks; Celery imports them when the worker starts.
TASK_MODULES = ("tasks.orders",)


#: Where a fetched order update stands in its order's line (tasks/state/orders.py).
ARRIVAL_INDEX = "tasks.state.orders:arrival_index"


def broker_transport_config(broker_url: str) -> dict[str, Any]:
    """TLS for a ``rediss://`` broker, with the server's certificate verified (kombu's default
    would skip that check).

    The transport itself needs no setting: in a worker, ``redis``, ``rediss`` and ``sentinel``
    resolve to ours (reliable fetch) once :func:`worker.transport.register` ran, which the
    worker does as it starts (worker/signals.py). Naming its class in ``broker_transport``
    instead would make kombu render the broker URL with the class path as its scheme, which
    Flower's broker view cannot read, and kombu's failover to the next URL would drop it.
    """
    if scheme_of(broker_url) == "rediss":
        return {"broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED}}
    return {}


def sentinel_options(sentinel: SentinelOptions | None) -> dict[str, Any]:
    """Transport options that tell kombu and Celery's backend which master the Sentinels
    monitor, and how to log in to the Sentinels themselves."""
    if sentinel is None:
        return {}
    return sentinel.transport_options(socket_timeout=5, socket_connect_timeout=5)


def lines_in_broker(settings: Settings) -> bool:
    """Whether the order lines (the state Redis) are the broker's: a claim's script can write
    to its own server only."""
    same = settings.state_redis_url == settings.celery_broker_url.get_secret_value()
    return settings.zapi_ordering and same


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; no Z-API secret goes here (`inspect conf` shows it)."""
    visibility_timeout = settings.celery_visibility_timeout
    lease = settings.celery_worker_lease
    # Sweeps restore jobs past the visibility timeout and renew this worker's lease: often
    # enough for both (three renewals per lease).
    restore_interval = max(1, min(10, visibility_timeout // 10, lease // 3))
    broker_url = settings.celery_broker_url.get_secret_value()
    sentinel = sentinel_of(settings)
    return {
        "broker_url": broker_url,
        **broker_transport_config(broker_url),
        "result_backend": settings.celery_result_backend.get_secret_value(),
        "broker_connection_retry_on_startup": True,
        # Celery gives up reconnecting after 100 tries (about 50 min) and stops the worker; a
        # worker must ride out a Redis outage of any length and resume by itself.
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            # A worker killed inside a restore sweep holds its mutex; don't let that block
            # every other worker's sweeps for kombu's default 5 minutes.
            "unacked_mutex_expire": 10,
            # A worker silent this long has its fetched messages and its jobs taken over.
            "fetch_lease": lease,
            # Each order update takes its place in its order's line as it is fetched, in the
            # claim's script: on the broker's server, so only when the lines live there too
            # (with ZAPI_STATE_REDIS_URL elsewhere, a task takes its place when it starts).
            **({"arrival_index": ARRIVAL_INDEX} if lines_in_broker(settings) else {}),
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            # Every job acks on the broker's pool from its own thread or greenlet, beside the
            # fetch, the sweep and the lease keeper: kombu's 10 would refuse the 11th at once
            # (MaxConnectionsError), and a refused ack pauses fetching.
            "max_connections": settings.worker_concurrency + 8,
            **sentinel_options(sentinel),
        },
        "result_backend_transport_options": sentinel_options(sentinel),
        # One backend (one Redis pool) for the process: Celery's default keeps one per thread,
        # and under gevent every task runs in a new greenlet, so every job would build a backend
        # and open a connection.
        "result_backend_thread_safe": True,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "redis_socket_timeout": 30,
        "redis_retry_on_timeout": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": settings.celery_result_expires,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        # WORKER_POOL=gevent (the default) acts through the command line (worker/pool_boot.py):
        # gevent chosen here would come too late for Celery's monkey-patching. This is the
        # pool of a worker started some other way, unpatched, and of WORKER_POOL=threads.
        "worker_pool": "threads",
        # A message no task can take becomes a dead letter, not a logged body (worker/consumer.py).
        "worker_consumer": "worker.consumer:Consumer",
        "worker_concurrency": settings.worker_concurrency,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
        "timezone": "UTC",
        "imports": TASK_MODULES,
    }


def create_app(settings: Settings | None = None) -> Celery:
    """Build the app; importing ``worker.signals`` wires start-up checks and log redaction."""
    settings = settings or get_settings()
    app = Celery("zapi-queue")
    app.conf.update(celery_config(settings))
    results.install(app)  # a late RETRY cannot overwrite a SUCCESS (worker/results.py)
    app.steps["consumer"].add(BatchedEvents)  # task events in batches (worker/event_batching.py)
    app.steps["consumer"].add(ConsumerHeartbeat)  # for `zapi-queue probe` (worker/heartbeat.py)
    app.steps["consumer"].add(Drain)  # a bounded stop on SIGTERM (worker/drain.py)
    return app


def _create_app_or_exit() -> Celery:
    """A malformed setting stops the process with one clear line, not a traceback."""
    try:
        return create_app()
    except ConfigurationError as exc:
        print(f"zapi-queue: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app = _create_app_or_exit()

# Register the tasks now, so the worker's banner lists them, and wire the signal handlers.
import tasks.orders  # noqa: E402, F401
import worker.signals  # noqa: E402
import worker.tracing_setup  # noqa: E402, F401
from worker import flower_guard  # noqa: E402

flower_guard.install()
