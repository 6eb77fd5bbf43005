"""The result backend keeps a final state: a late RETRY write (Celery stores it after it
publishes the retry, which another worker may already have run) never replaces SUCCESS or
FAILURE. On a real Redis, through the backend the worker uses."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, states

from devtools.redis_server import RedisServer
from worker import results


@pytest.fixture(scope="module")
def app() -> Iterator[Celery]:
    with RedisServer() as server:
        celery = Celery("results-test", backend=f"redis://127.0.0.1:{server.port}/1")
        celery.conf.result_expires = 600
        results.install(celery)
        yield celery
        celery.close()


def guarded(app: Celery) -> Any:
    """The app's backend, checked to be ours (Any: Celery's stubs lack the Redis methods)."""
    backend = app.backend
    assert isinstance(backend, results.GuardedRedisBackend)
    return backend


def test_the_app_uses_the_guarded_backend(app: Celery) -> None:
    assert guarded(app) is app.backend


@pytest.mark.parametrize("final", [states.SUCCESS, states.FAILURE])
def test_a_late_retry_does_not_replace_a_final_state(app: Celery, final: str) -> None:
    job = str(uuid.uuid4())
    backend = guarded(app)
    done = {"zaapId": "Z"} if final == states.SUCCESS else ValueError("gave up")
    backend.store_result(job, done, final)
    # What the late write of the first execution does, below Celery's own (racy) check.
    retry = backend.prepare_exception(ValueError("retry"))
    meta = backend.encode({"status": states.RETRY, "result": retry, "task_id": job})
    backend._set_with_state(backend.get_key_for_task(job), meta, states.RETRY)
    backend.store_result(job, ValueError("retry"), states.RETRY)
    assert app.AsyncResult(job).state == final
    assert 0 < backend.client.ttl(backend.get_key_for_task(job)) <= 600


def test_non_final_states_are_written_and_published(app: Celery) -> None:
    job = str(uuid.uuid4())
    backend = guarded(app)
    pubsub = backend.client.pubsub()
    pubsub.subscribe(backend.get_key_for_task(job))
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    backend.store_result(job, ValueError("waiting"), states.RETRY)
    assert app.AsyncResult(job).state == states.RETRY
    message = pubsub.get_message(timeout=2)
    assert message is not None
    assert b"RETRY" in message["data"]
    pubsub.close()
    backend.store_result(job, {"zaapId": "Z"}, states.SUCCESS)
    assert app.AsyncResult(job).state == states.SUCCESS


def test_success_stays_and_a_final_state_replaces_a_failure(app: Celery) -> None:
    backend = guarded(app)
    delivered, refused = str(uuid.uuid4()), str(uuid.uuid4())
    backend.store_result(delivered, {"zaapId": "Z"}, states.SUCCESS)
    backend.store_result(delivered, ValueError("late duplicate"), states.FAILURE)
    assert app.AsyncResult(delivered).state == states.SUCCESS  # Celery's own rule
    backend.store_result(refused, ValueError("refused"), states.FAILURE)
    backend.store_result(refused, {"zaapId": "Z"}, states.SUCCESS)  # a replay that delivered
    assert app.AsyncResult(refused).state == states.SUCCESS


def test_a_result_write_is_one_round_trip(app: Celery) -> None:
    """Celery reads the current state before every write; here the write's script does."""
    backend = guarded(app)
    job = str(uuid.uuid4())
    backend.store_result(job, {"zaapId": "W"}, states.STARTED)  # the script is loaded
    backend.client.config_resetstat()
    backend.store_result(job, {"zaapId": "Z"}, states.SUCCESS)
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in backend.client.info("commandstats").items()
    }
    assert calls.get("evalsha") == 1
    assert "multi" not in calls
    assert "exec" not in calls
    assert calls.get("get") == 1  # inside the script
    assert app.AsyncResult(job).state == states.SUCCESS


def test_a_result_write_refused_by_a_full_redis_waits_until_it_is_taken() -> None:
    """Celery retries a result write after a lost connection only; one refused by a Redis full
    under noeviction (OOM) was dropped: the job acked, its producer seeing PENDING for ever."""
    with RedisServer() as server:
        celery = Celery("results-oom", backend=f"redis://127.0.0.1:{server.port}/1")
        celery.conf.result_backend_always_retry = True
        celery.conf.result_backend_max_retries = 20
        results.install(celery)
        admin = server.client()
        try:
            backend = guarded(celery)
            job = str(uuid.uuid4())
            admin.config_set("maxmemory", 1)
            threading.Timer(1.5, admin.config_set, ("maxmemory", 0)).start()
            started = time.monotonic()
            backend.store_result(job, {"zaapId": "Z"}, states.SUCCESS)
            assert time.monotonic() - started >= 1.0  # it waited for the room
            assert celery.AsyncResult(job).state == states.SUCCESS
        finally:
            admin.config_set("maxmemory", 0)
            admin.close()
            celery.close()
