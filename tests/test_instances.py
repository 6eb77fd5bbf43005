"""Several Z-API instances in one fleet: each job goes through the instance its ``instance``
kwarg names, with that instance's credentials and its own rate limit; an unknown alias fails
at once; no instance's token shows anywhere."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from devtools.metrics import busiest_window
from devtools.zapi_sim import OtherInstance
from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer
from tasks.state.ratelimit import RateLimiter, hold_sends
from tests.bodies import unique_body
from tests.cli import health_report, run_cli
from tests.faults import fault_stack

pytestmark = pytest.mark.e2e

B_ID, B_TOKEN, B_CLIENT = "inst-b", "itok-B-SECRET-55aa01", "ctok-B-SECRET-99cc02"
DEFAULT_RATE, B_RATE = 8, 4


def instances_env() -> dict[str, str]:
    entry = {"instance_id": B_ID, "instance_token": B_TOKEN, "client_token": B_CLIENT}
    return {
        "zapi_instances": json.dumps({"shop-b": {**entry, "rate_limit": B_RATE}}),
        "zapi_rate_limit": str(DEFAULT_RATE),
        "zapi_rate_burst": "1",
    }


def test_each_job_goes_through_its_instance_within_that_instance_limit(tmp_path: Path) -> None:
    with fault_stack(tmp_path, **instances_env()) as stack:
        # Z-API's own thresholds: a 429 above each instance's limit (and a small margin).
        stack.sim.rate_limit, stack.sim.rate_burst = DEFAULT_RATE, 1
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT, rate_limit=B_RATE)
        worker = stack.worker()
        task = "zapi.order_status_update"
        default_jobs = [stack.producer.send_task(task, args=[unique_body()]).id for _ in range(24)]
        b_jobs = [
            stack.producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-b"}).id
            for _ in range(12)
        ]
        unknown = stack.producer.send_task(task, args=[unique_body()], kwargs={"instance": "nope"})
        states = stack.wait_all([*default_jobs, *b_jobs, unknown.id], timeout=60)
        unknown.get(timeout=10, propagate=False)
        received = stack.sim.requests()
        log = worker.log_text()
        keys = [key.decode() for key in stack.redis.client().scan_iter(count=1000)]
        results = [
            json.dumps(stack.producer.AsyncResult(job).result, default=str)
            for job in [*default_jobs, *b_jobs]
        ]

    assert Counter(states.values()) == {"SUCCESS": 36, "FAILURE": 1}
    # The unknown alias: failed at once, naming it and the fleet's aliases; nothing sent.
    assert type(unknown.result).__name__ == "UnknownInstanceError"
    assert str(unknown.result) == "unknown instance 'nope': this fleet knows default, shop-b"
    assert len(received) == 36

    by_instance: dict[str, list[float]] = {}
    for request in received:
        assert request.status == 200, request.status  # no 429, no 403
        instance = request.path.split("/")[2]
        by_instance.setdefault(instance, []).append(request.received_at)
    assert sorted(len(times) for times in by_instance.values()) == [12, 24]
    assert len(by_instance[B_ID]) == 12
    # Each within its own limit (a burst of 1, plus one at a window's edge).
    assert busiest_window(by_instance[B_ID]) <= B_RATE + 1
    assert busiest_window(by_instance["fault-instance"]) <= DEFAULT_RATE + 1
    b_paths = {r.path.split("/")[4] for r in received if r.path.split("/")[2] == B_ID}
    assert b_paths == {B_TOKEN}
    assert {r.headers["client-token"] for r in received if B_ID in r.path} == {B_CLIENT}

    # The alias, never a token, in the attempt log; no token in results or Redis keys.
    assert "instance=shop-b" in log
    for secret in (B_TOKEN, B_CLIENT):
        assert secret not in log
        assert not any(secret in key for key in keys)
        assert not any(secret in result for result in results)


def test_a_bad_instances_entry_stops_the_worker_naming_alias_and_field(tmp_path: Path) -> None:
    bad = json.dumps({"shop-b": {"instance_id": B_ID}, "Shop": {}})
    with (
        fault_stack(tmp_path, zapi_instances=bad) as stack,
        pytest.raises(RuntimeError) as exc_info,
    ):
        stack.worker()
    said = str(exc_info.value)
    assert "ZAPI_INSTANCES: shop-b: instance_token: Field required" in said
    assert B_TOKEN not in said


def test_redis_keys_are_per_instance(tmp_path: Path) -> None:
    """Idempotency: the same body through two instances is two sends (two WhatsApp numbers)."""
    with fault_stack(tmp_path, **instances_env()) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        stack.worker()
        body = unique_body()
        task = "zapi.order_status_update"
        first = stack.producer.send_task(task, args=[body])
        second = stack.producer.send_task(task, args=[body], kwargs={"instance": "shop-b"})
        assert stack.wait_all([first.id, second.id], timeout=30) == {
            first.id: "SUCCESS",
            second.id: "SUCCESS",
        }
        client: redis.Redis = stack.redis.client()
        idem = sorted(k.decode().split(":")[2] for k in client.scan_iter("zapi-queue:idem:*"))
    assert len(stack.sim.requests(str(body["messageId"]))) == 2
    assert sorted(set(idem)) == ["fault-instance", B_ID]


def test_the_cli_and_the_producer_choose_the_instance(tmp_path: Path) -> None:
    with fault_stack(tmp_path, **instances_env()) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        stack.worker()
        by_cli, by_producer, many = unique_body(), unique_body(), [unique_body(), unique_body()]
        completed = run_cli(
            stack.env,
            *("enqueue", "status", "--instance", "shop-b", "--wait", "30"),
            stdin=json.dumps(by_cli),
        )
        assert completed.returncode == 0, completed.stderr
        producer = Producer(
            broker_url=stack.env["CELERY_BROKER_URL"],
            result_backend=stack.env["CELERY_RESULT_BACKEND"],
        )
        job = producer.enqueue(Endpoint.ORDER_STATUS_UPDATE, by_producer, instance="shop-b")
        bulk = producer.enqueue_many(Endpoint.ORDER_STATUS_UPDATE, many, instance="shop-b")
        for job_id in [job, *bulk.job_ids]:
            producer.get_result(job_id, timeout=30)
        producer.close()
        paths = {
            body["messageId"]: {r.path.split("/")[2] for r in stack.sim.requests(body["messageId"])}
            for body in [by_cli, by_producer, *many]
        }
    assert all(instances == {B_ID} for instances in paths.values()), paths


def test_health_lists_every_instance_with_its_pause(tmp_path: Path) -> None:
    with fault_stack(tmp_path, **instances_env()) as stack:
        limiter = RateLimiter(stack.redis.client(), instance_id=B_ID, rate=B_RATE)
        limiter.penalize(60, rate_limited=True)
        shown = run_cli(stack.env, "health", "--json", "--min-workers", "0", "--timeout", "0.5")
        text = run_cli(stack.env, "health", "--min-workers", "0", "--timeout", "0.5").stdout
    report = json.loads(shown.stdout)
    assert sorted(report["instances"]) == ["default", "shop-b"]
    assert report["instances"]["default"]["paused_for"] == 0
    assert 55 < report["instances"]["shop-b"]["paused_for"] <= 60
    assert report["instances"]["shop-b"]["rate_limit"] == B_RATE
    assert "instance shop-b (shop-b): 4/s, PAUSED for" in text
    assert B_TOKEN not in shown.stdout + text


def test_dead_letters_are_listed_by_instance(tmp_path: Path) -> None:
    with fault_stack(tmp_path, **instances_env()) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        stack.worker()
        task = "zapi.order_status_update"
        bad = unique_body(orderStatus="delivered")
        for_b = stack.producer.send_task(task, args=[bad], kwargs={"instance": "shop-b"})
        for_default = stack.producer.send_task(task, args=[unique_body(orderStatus="x")])
        assert stack.wait_all([for_b.id, for_default.id], timeout=30) == {
            for_b.id: "FAILURE",
            for_default.id: "FAILURE",
        }

        def listed(alias: str) -> list[str]:
            shown = run_cli(stack.env, "dead", "list", "--instance", alias, "--json")
            assert shown.returncode == 0, shown.stderr
            return [json.loads(line)["job_id"] for line in shown.stdout.splitlines()]

        assert listed("shop-b") == [for_b.id]
        assert listed("default") == [for_default.id]


def test_health_counts_each_instances_jobs_dead_letters_and_sends(tmp_path: Path) -> None:
    with fault_stack(tmp_path, **instances_env()) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        # B's jobs wait in the workers: held, and Z-API's status (polled) agrees.
        hold_sends(stack.redis.client(), B_ID, 120)
        stack.sim.set_connected(False, B_ID)
        task = "zapi.order_status_update"
        for_b = {"instance": "shop-b"}
        send = stack.producer.send_task
        held = [send(task, args=[unique_body()], kwargs=for_b) for _ in range(3)]
        invalid = stack.producer.send_task(task, args=[unique_body(phone="12")], kwargs=for_b)
        free = [stack.producer.send_task(task, args=[unique_body()]) for _ in range(2)]
        before = health_report(stack.env)

        stack.worker()
        states = stack.wait_all([invalid.id, *(job.id for job in free)], timeout=30)
        assert set(states.values()) == {"FAILURE", "SUCCESS"}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until every held job is fetched
            after = health_report(stack.env)
            if after["instances"]["shop-b"]["in_workers"] == len(held):
                break
            time.sleep(0.5)
        text = run_cli(stack.env, "health", "--timeout", "1").stdout

    counts = ("queued", "in_workers", "dead_letters", "sends_last_minute")
    shown_before = {alias: [i[name] for name in counts] for alias, i in before["instances"].items()}
    assert shown_before == {"default": [2, 0, 0, 0], "shop-b": [4, 0, 0, 0]}
    shown_after = {alias: [i[name] for name in counts] for alias, i in after["instances"].items()}
    assert shown_after == {"default": [0, 0, 0, 2], "shop-b": [0, 3, 1, 0]}
    assert after["queue_census_complete"] is True
    assert "  0 jobs queued, 3 in workers, 1 dead letter, 0 sends in the last minute" in text
    assert "  0 jobs queued, 0 in workers, 0 dead letters, 2 sends in the last minute" in text
