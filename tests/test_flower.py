"""Flower against the session's Redis and worker: authenticated, masked, metrics answering."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from celery.result import AsyncResult

from devtools.ports import free_port
from devtools.processes import FlowerProcess, celery_command
from devtools.zapi_sim import Fault, ZapiSimulator
from tests.bodies import DOCS_SEND_ORDER_BODY, unique_body, unique_key
from tests.cli import run_command
from tests.conftest import SECRETS
from worker.flower_guard import credentials, refusal

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

AUTH = ("ops", "flower-pass-9")
PHONE = "5511976543210"


@pytest.fixture(scope="module")
def flower(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**worker_env, "FLOWER_BASIC_AUTH": ":".join(AUTH)}
    log = Path(tmp_path_factory.mktemp("flower")) / "flower.log"
    with FlowerProcess(env, log, port=free_port()) as process:
        # Flower listens to events once it has received one (the worker's heartbeat every
        # 2 s); a task sent before that would miss its first event, which carries the args.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{process.url}/metrics", auth=AUTH, timeout=5).text
            if any(line.startswith("flower_worker_online{") for line in metrics.splitlines()):
                break
            time.sleep(0.2)
        yield process.url


def wait_for_task(url: str, job_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=5).json()
        if tasks.get(job_id, {}).get("state") == "SUCCESS":
            task: dict[str, Any] = tasks[job_id]
            return task
        time.sleep(0.2)
    raise AssertionError(f"Flower never showed {job_id} as SUCCESS")


def test_flower_requires_authentication(flower: str) -> None:
    assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/api/tasks", auth=("ops", "wrong"), timeout=5).status_code == 401


def test_flower_lists_processed_tasks_with_masked_phones(flower: str, producer: Celery) -> None:
    result = producer.send_task("zapi.order_status_update", args=[unique_body(phone=PHONE)])
    reply = result.get(timeout=30)
    task = wait_for_task(flower, result.id)

    assert task["name"] == "zapi.order_status_update"
    assert "55119*****210" in task["args"]
    assert task["kwargs"] == "{'instance': 'default'}"  # the instance it went through
    assert reply["zaapId"] in str(task["result"])
    everything = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text
    assert PHONE not in everything
    assert not any(secret in everything for secret in SECRETS)


def test_flower_and_inspect_show_a_send_order_without_its_phone_or_pix_key(
    flower: str, producer: Celery
) -> None:
    """A send-order job is listed under its own task name, its phone masked and its PIX key
    (an e-mail: no digit masking would catch it) nowhere, in Flower and in ``inspect``."""
    pix_key = f"pix-{uuid.uuid4().hex[:8]}@loja.example.com"
    body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
    body["phone"] = PHONE
    body["paymentSettings"]["pix"]["key"] = pix_key
    key = unique_key()
    # A countdown keeps the job in ``inspect scheduled`` for a moment: the worker's own view.
    job = producer.send_task("zapi.send_order", args=[body], kwargs={"order_key": key}, countdown=2)
    inspector = producer.control.inspect(timeout=1)
    deadline = time.monotonic() + 10
    scheduled: list[Any] = []
    while not scheduled and time.monotonic() < deadline:
        replies = inspector.scheduled() or {}
        scheduled = [e for jobs in replies.values() for e in jobs if e["request"]["id"] == job.id]
    assert scheduled, "the job never showed in inspect scheduled"
    shown = scheduled[0]["request"]
    assert shown["args"] == "[{'phone': '55119*****210'}]"
    assert shown["kwargs"] == f"{{'instance': 'default', 'order_key': '{key}'}}"

    reply = job.get(timeout=30)
    task = wait_for_task(flower, job.id)
    assert task["name"] == "zapi.send_order"
    assert task["args"] == "[{'phone': '55119*****210'}]"
    assert task["kwargs"] == f"{{'instance': 'default', 'order_key': '{key}'}}"
    assert reply["messageId"] in str(task["result"])
    everything = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text
    everything += str(httpx.get(f"{flower}/api/task/info/{job.id}", auth=AUTH, timeout=5).json())
    for personal in (PHONE, pix_key, pix_key.partition("@")[0]):
        assert personal not in everything + str(scheduled)
    assert not any(secret in everything for secret in SECRETS)


def test_flower_shows_that_a_repeat_was_not_sent(flower: str, producer: Celery) -> None:
    body = unique_body()
    first = producer.send_task("zapi.order_status_update", args=[body])
    reply = first.get(timeout=30)
    again = producer.send_task("zapi.order_status_update", args=[body])
    assert again.get(timeout=30) == reply

    deadline = time.monotonic() + 15
    shown = ""
    while "not sent" not in shown and time.monotonic() < deadline:
        shown = str(wait_for_task(flower, again.id)["result"])
        time.sleep(0.2)
    assert reply["zaapId"] in shown
    assert f"not sent: already delivered by job {first.id}" in shown
    task = wait_for_task(flower, again.id)
    assert task["state"] == "SUCCESS"
    assert "not sent" not in str(wait_for_task(flower, first.id)["result"])


def test_flower_metrics_answer(flower: str) -> None:
    response = httpx.get(f"{flower}/metrics", auth=AUTH, timeout=5)
    assert response.status_code == 200
    assert "flower_events_total" in response.text


def without_flower_settings(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if not name.startswith("FLOWER_")}


def assert_flower_refuses_to_start(env: dict[str, str]) -> None:
    """Flower started with ``env`` (on all interfaces) exits at once, saying it needs a login."""
    completed = run_command(
        [*celery_command(), "-A", "worker", "flower", f"--port={free_port()}"], env
    )
    assert completed.returncode == 2
    assert "refusing to serve Flower on all interfaces without authentication" in (completed.stderr)


def test_flower_refuses_to_serve_all_interfaces_unauthenticated(
    worker_env: dict[str, str],
) -> None:
    assert_flower_refuses_to_start(without_flower_settings(worker_env))


def test_flower_metrics_need_the_login(flower: str) -> None:
    assert httpx.get(f"{flower}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/metrics", auth=("ops", "wrong"), timeout=5).status_code == 401


@pytest.mark.parametrize("given", ["", "   "])
def test_flower_refuses_an_empty_login_like_a_missing_one(
    worker_env: dict[str, str], given: str
) -> None:
    assert_flower_refuses_to_start(
        {**without_flower_settings(worker_env), "FLOWER_BASIC_AUTH": given}
    )


@pytest.mark.parametrize("given", ["ops:", ":pw-secret-1", "ops", " : "])
def test_a_login_without_user_or_password_is_refused_anywhere(given: str) -> None:
    reason = refusal("127.0.0.1", [given], None)
    assert reason is not None
    assert "entry 1 of 1 must be user:password" in reason
    assert "pw-secret-1" not in reason


def test_blank_login_entries_count_as_none() -> None:
    assert credentials(["", " ", "ops:pw"]) == ["ops:pw"]
    assert refusal("", ["", " "], None) is not None
    assert refusal("127.0.0.1", [""], None) is None


def shows_retried(task: dict[str, Any]) -> bool:
    """Whether Flower shows ``task`` as retried: in RETRY, or RECEIVED again after its retry.

    A retry republishes the job with its eta, and the worker that fetches it announces it
    ``task-received``. That event and the ``task-retried`` one are sent from different places
    (the consumer, the task's end) and Celery's event state lets whichever comes last set the
    state: RETRY until the republished job is fetched, or RECEIVED with the eta and the retry's
    fields (``retried``, ``exception``) kept. Either is how Celery shows a countdown retry."""
    if task.get("state") == "RETRY":
        return True
    return task.get("state") == "RECEIVED" and bool(task.get("retried")) and bool(task.get("eta"))


def first_seen_retrying(
    url: str, producer: Celery, job_ids: list[str], timeout: float = 20
) -> dict[str, dict[str, Any]]:
    """Each job as Flower shows it the first time it is retried (``shows_retried``), with its
    task info and the result backend's state read at that moment. All jobs are watched in one
    loop: a retry is shown for its countdown only, and watching one job after another lets the
    second's pass on a loaded machine. Each turn asks for the watched jobs alone: serving the
    whole task list 20 times a second likely starved Flower's event thread on a loaded CI
    machine, so that it applied a retry and the SUCCESS 5 s after it together."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id in seen:
                continue
            shown = httpx.get(f"{url}/api/task/info/{job_id}", auth=AUTH, timeout=5)
            if shown.status_code == 404 or not shows_retried(shown.json()):
                continue  # 404: Flower has no event of it yet
            stored: AsyncResult[Any] = AsyncResult(job_id, app=producer)
            listed = httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=5).json().get(job_id, {})
            seen[job_id] = {
                "listed": dict(listed),
                "info": shown.json(),
                "stored": (stored.state, stored.traceback),
            }
        time.sleep(0.1)
    missing = [job_id for job_id in job_ids if job_id not in seen]
    assert not missing, f"Flower never showed {missing} as retried"
    return seen


def test_flower_shows_no_phone_during_retries_and_a_wait_as_a_wait(
    flower: str, producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    failing, waiting = unique_body(phone=PHONE), unique_body(phone=PHONE)
    zapi_sim.script(failing["messageId"], Fault(status=503, headers={"Retry-After": "3"}))
    # The pause (ZAPI_RETRY_BACKOFF_MAX, 5 s here) outlasts a loaded machine's reads below.
    zapi_sim.script(waiting["messageId"], Fault(status=429, headers={"Retry-After": "5"}))
    retried = producer.send_task("zapi.order_status_update", kwargs={"body": failing})
    deferred = producer.send_task("zapi.order_status_update", args=[waiting])

    retrying = first_seen_retrying(flower, producer, [retried.id, deferred.id])
    wait = retrying[deferred.id]
    assert "waiting for a rate slot" in str(wait["info"]["exception"])
    assert not wait["info"].get("traceback")
    assert wait["stored"] == ("RETRY", None)
    seen: list[Any] = [retrying[job.id] for job in (retried, deferred)]
    for job in (retried, deferred):
        job.get(timeout=30)
    seen += [wait_for_task(flower, job.id) for job in (retried, deferred)]
    everything = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text
    assert PHONE not in everything
    assert PHONE not in str(seen)
    assert "55119*****210" in str(seen[0]["listed"]["kwargs"])
