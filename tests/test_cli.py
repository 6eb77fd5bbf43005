"""``zapi-queue`` against the session's Redis and worker: dead letters and job status."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from devtools.ports import free_port
from devtools.redis_server import RedisServer
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.state.deadletter import LETTER_PREFIX, DeadLetter, DeadLetterStore
from tests import letters
from tests.bodies import unique_body, unique_id
from tests.conftest import MAX_ATTEMPTS, REDIS_PASSWORD, SECRETS
from worker.fetch_scripts import REJECTED_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

STATUS = "zapi.order_status_update"
CLI = str(Path(sys.executable).parent / "zapi-queue")


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    completed = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == code, output
    assert not any(secret in output for secret in SECRETS)
    return output


def failed_job(producer: Celery, zapi_sim: ZapiSimulator) -> tuple[str, dict[str, object]]:
    body = unique_body(phone="5511912345678")
    zapi_sim.script(str(body["messageId"]), *[Fault(status=503)] * MAX_ATTEMPTS)
    result = producer.send_task(STATUS, args=[body])
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    return result.id, body


def test_a_job_that_failed_for_good_is_kept_and_replays_with_one_send(
    producer: Celery, zapi_sim: ZapiSimulator, worker_env: dict[str, str]
) -> None:
    job_id, body = failed_job(producer, zapi_sim)

    raw = cli(worker_env, "dead", "list", "--json")
    assert "5511912345678" not in raw  # phones masked in JSON too
    listed = [json.loads(line) for line in raw.splitlines()]
    [letter] = [entry for entry in listed if entry["job_id"] == job_id]
    assert letter["task"] == STATUS
    assert letter["body"] == {**body, "phone": "55119*****678"}
    full = cli(worker_env, "dead", "list", "--json", "--show-phones").splitlines()
    [letter_in_full] = [json.loads(x) for x in full if json.loads(x)["job_id"] == job_id]
    assert letter_in_full["body"] == body
    assert letter["attempts"] == MAX_ATTEMPTS
    assert letter["error_type"] == "AttemptsExhaustedError"
    assert "HTTP 503" in letter["error"]
    assert letter["first_attempt_at"] <= letter["failed_at"]

    table = cli(worker_env, "dead", "list", "--error-type", "AttemptsExhaustedError")
    assert job_id in table
    assert "55119*****678" in table  # phones are masked in listings
    assert "5511912345678" not in table
    assert '"phone": "55119*****678"' in cli(worker_env, "dead", "show", job_id)
    shown = cli(worker_env, "dead", "show", job_id, "--show-phones")
    assert '"phone": "5511912345678"' in shown

    replayed = cli(worker_env, "dead", "replay", job_id)
    [new_id] = re.findall(rf"replayed {job_id} as (\S+)", replayed)
    assert producer.AsyncResult(new_id).get(timeout=30)["zaapId"]
    statuses = [r.status for r in zapi_sim.requests(str(body["messageId"]))]
    assert statuses == [503] * MAX_ATTEMPTS + [200]
    assert job_id not in cli(worker_env, "dead", "list")


def test_an_invalid_body_is_kept_with_zero_attempts_and_can_be_purged(
    producer: Celery, worker_env: dict[str, str]
) -> None:
    result = producer.send_task(STATUS, args=[{"phone": "x"}])
    result.get(timeout=30, propagate=False)
    letter = json.loads(cli(worker_env, "dead", "show", result.id))
    assert letter["attempts"] == 0
    assert letter["error_type"] == "InvalidBodyError"

    assert "1 dead letters purged" in cli(worker_env, "dead", "purge", result.id, "--yes")
    assert f"no dead letter with id {result.id}" in cli(
        worker_env, "dead", "show", result.id, code=2
    )


def test_replay_and_purge_need_a_selection(worker_env: dict[str, str]) -> None:
    for command in ("replay", "purge"):
        assert "name job ids, or use --all" in cli(worker_env, "dead", command, code=2)


def test_status_of_a_delivered_a_failed_and_an_unknown_job(
    producer: Celery, zapi_sim: ZapiSimulator, worker_env: dict[str, str]
) -> None:
    delivered = producer.send_task(STATUS, args=[unique_body()])
    reply = delivered.get(timeout=30)
    failed_id, _ = failed_job(producer, zapi_sim)

    ok = json.loads(cli(worker_env, "status", delivered.id, "--json"))
    delivery = ok.pop("delivery")
    assert ok == {"id": delivered.id, "state": "SUCCESS", "result": reply}
    # No webhook receiver in this stack: Z-API accepted it, and no callback said more.
    assert delivery["state"] == "accepted"
    assert delivery["error"] is None
    bad = json.loads(cli(worker_env, "status", failed_id, "--json", code=1))
    assert bad["state"] == "FAILURE"
    assert bad["error_type"] == "AttemptsExhaustedError"
    assert "HTTP 503" in bad["error"]
    unknown = cli(worker_env, "status", "no-such-job", code=3)
    assert "state: PENDING" in unknown
    assert "unknown job" in unknown


def test_an_unreachable_redis_is_reported_without_its_password(
    worker_env: dict[str, str],
) -> None:
    env = {
        **worker_env,
        "CELERY_BROKER_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
    }
    output = cli(env, "dead", "list", code=2)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in output


@pytest.mark.parametrize(
    "command",
    [("enqueue", "status"), ("status", "some-job"), ("order", "show", "X"), ("health",)],
    ids=["enqueue", "status", "order show", "health"],
)
def test_redis_down_is_one_line_for_every_command(
    worker_env: dict[str, str], command: tuple[str, ...]
) -> None:
    down = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}"
    env = {
        **worker_env,
        "CELERY_BROKER_URL": f"{down}/0",
        "CELERY_RESULT_BACKEND": f"{down}/1",
    }
    body = json.dumps({"messageId": "M", "orderStatus": "shipped"})
    completed = run_cli(env, *command, stdin=body)
    output = completed.stdout + completed.stderr
    assert completed.returncode in (1, 2), output  # health: 1, unhealthy; the others: 2
    assert "Traceback" not in output
    assert REDIS_PASSWORD not in output
    if completed.returncode == 2:
        assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
        assert "cannot reach Redis" in completed.stderr


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_enqueue_one_body_from_stdin_and_wait_for_the_reply(
    worker_env: dict[str, str], zapi_sim: ZapiSimulator
) -> None:
    body = unique_body(paymentStatus="paid")
    completed = run_cli(worker_env, "enqueue", "payment", "--wait", "30", stdin=json.dumps(body))

    assert completed.returncode == 0, completed.stderr
    job_id, reply_line = completed.stdout.splitlines()
    assert json.loads(reply_line)["zaapId"]
    assert len(zapi_sim.requests(str(body["messageId"]))) == 1
    assert zapi_sim.requests(str(body["messageId"]))[0].path.endswith("/order-payment-update")
    assert "state: SUCCESS" in cli(worker_env, "status", job_id)


def test_a_wait_that_ends_says_not_finished_with_the_state(worker_env: dict[str, str]) -> None:
    """A short update for an order the book does not have waits (ZAPI_ORDER_WAIT): the job is
    alive, not Redis gone."""
    short = {"orderRequestId": unique_id("4N8", 10).upper(), "orderStatus": "shipped"}
    completed = run_cli(worker_env, "enqueue", "status", "--wait", "2", stdin=json.dumps(short))
    assert completed.returncode == 4, completed.stderr
    [line] = completed.stderr.splitlines()
    assert re.fullmatch(
        r"zapi-queue: job \S+ not finished after 2 s \(state [A-Z]+\); follow it with "
        r"zapi-queue status \S+",
        line,
    ), line
    assert "Redis" not in line


def test_a_failed_job_under_wait_prints_its_error_not_a_traceback(
    worker_env: dict[str, str], zapi_sim: ZapiSimulator
) -> None:
    body = unique_body(phone="5511912345670")
    zapi_sim.script(str(body["messageId"]), Fault(status=400))
    completed = run_cli(worker_env, "enqueue", "status", "--wait", "30", stdin=json.dumps(body))
    assert completed.returncode == 1, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith("failed: "), line
    assert "Error: " in line
    assert "400" in line
    assert "Traceback" not in completed.stdout + completed.stderr
    assert "5511912345670" not in completed.stdout + completed.stderr


def test_an_unreadable_redis_url_is_one_line_naming_the_variable(
    worker_env: dict[str, str],
) -> None:
    for url in ("redis:/127.0.0.1:6379/0", "redis://127.0.0.1:notaport/0", "redis://h:1/zero"):
        for args in (("health",), ("status", "x"), ("dead", "list")):
            env = {**worker_env, "CELERY_BROKER_URL": url}
            completed = run_cli(env, *args)
            assert completed.returncode == 2
            [line] = completed.stderr.splitlines()
            assert line.startswith("zapi-queue: CELERY_BROKER_URL "), line


def test_enqueue_refuses_an_invalid_body_naming_the_field(worker_env: dict[str, str]) -> None:
    completed = run_cli(
        worker_env, "enqueue", "status", stdin=json.dumps(unique_body(orderStatus="x"))
    )
    assert completed.returncode == 1
    assert "rejected: invalid order-status-update body (1 problem): orderStatus:" in (
        completed.stderr
    )


def test_bulk_file_enqueues_good_lines_and_reports_bad_ones(
    worker_env: dict[str, str], zapi_sim: ZapiSimulator, producer: Celery, tmp_path: Path
) -> None:
    bodies = [unique_body() for _ in range(8)]
    lines = [json.dumps(b) for b in bodies]
    lines[2] = "{not json"
    lines[5] = json.dumps(unique_body(phone="12"))
    lines.insert(4, "")  # blank lines are skipped, line numbers still count them
    updates = tmp_path / "updates.jsonl"
    updates.write_text("\n".join(lines) + "\n")
    completed = run_cli(worker_env, "enqueue", "status", "--file", str(updates))

    assert completed.returncode == 1
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert records[2] == {"line": 3, "rejected": records[2]["rejected"]}
    assert records[2]["rejected"].startswith("not valid JSON: Expecting property name")
    assert records[5]["rejected"].startswith("invalid order-status-update body (1 problem): phone:")
    assert "enqueued 6, rejected 2 in " in completed.stderr
    assert "  line 3: not valid JSON" in completed.stderr
    assert "  line 7: invalid order-status-update body (1 problem): phone:" in completed.stderr
    # Off a terminal, progress is a plain line (the last one at least): count, share, rate.
    assert re.search(r"^enqueueing: 8/8 \(100%\), [\d,]+/s, in \d+s$", completed.stderr, re.M)
    assert "\r" not in completed.stderr

    # Each job id on stdout belongs to its line's body, and was delivered once.
    jobs = {r["line"]: r["job_id"] for r in records if "job_id" in r}
    numbered = {n: json.loads(line) for n, line in enumerate(lines, 1) if n in jobs}
    for number, job_id in jobs.items():
        assert producer.AsyncResult(job_id).get(timeout=30)["zaapId"]
        assert len(zapi_sim.requests(str(numbered[number]["messageId"]))) == 1
    assert zapi_sim.requests(str(bodies[2]["messageId"])) == []


def test_bulk_refusals_are_grouped_and_records_go_to_the_out_file(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    bad = [json.dumps(unique_body(orderStatus="delivered")) for _ in range(300)]
    lines = [*bad[:150], json.dumps(unique_body()), *bad[150:], "[1]"]
    updates = tmp_path / "updates.jsonl"
    updates.write_text("\n".join(lines) + "\n")
    out = tmp_path / "jobs.jsonl"
    completed = run_cli(worker_env, "enqueue", "status", "--file", str(updates), "--out", str(out))

    assert completed.returncode == 1
    assert completed.stdout == ""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 302
    assert "job_id" in records[150]
    assert sum("rejected" in r for r in records) == 301
    summary = [line for line in completed.stderr.splitlines() if line.startswith("  ")]
    assert len(summary) == 2, completed.stderr
    assert summary[0].startswith("  300 lines 1, 2, 3, 4, 5, ...: invalid order-status-update")
    assert "orderStatus: Input should be" in summary[0]
    assert summary[1].startswith("  line 302: invalid order-status-update body")


def test_health_reports_workers_queue_and_dead_letters(
    worker_env: dict[str, str], worker: object
) -> None:
    report = json.loads(cli(worker_env, "health", "--json"))
    assert report["healthy"] is True
    assert report["broker_reachable"] is True
    assert any(name.startswith("zapi-") for name in report["workers"])
    assert isinstance(report["queue_depth"], int)
    assert isinstance(report["dead_letters"], int)
    assert isinstance(report["dead_letters_dropped"], int)
    assert report["maxmemory_policy"] == "noeviction"
    assert "state_maxmemory_policy" not in report  # the state Redis is the broker's URL
    assert report["set_aside_items"] == 0
    assert REDIS_PASSWORD not in report["broker"]

    text = cli(worker_env, "health", "--min-workers", "1")
    lines = text.splitlines()
    assert lines[0] == "healthy: yes"
    assert "(reachable, maxmemory-policy noeviction)" in lines[1]
    assert re.search(r"^workers: 1 worker answering: zapi-\w+@localhost$", text, re.M)
    assert "0 items set aside" in text
    assert re.search(r"^dead letters: \d+ dead letters?, \d+ dropped by the cap$", text, re.M)
    assert lines[-1] == "problems: none"
    for python_repr in ("[", "]", "True", "False", "{"):  # for people, not a dict dump
        assert python_repr not in text
    unhealthy = cli(worker_env, "health", "--min-workers", "3", code=1)
    assert "healthy: NO" in unhealthy
    assert "  - 1 worker answering, 3 wanted" in unhealthy


def test_health_counts_queue_items_set_aside_without_turning_unhealthy(
    worker_env: dict[str, str], worker: object, redis_server: RedisServer
) -> None:
    """A poison item is the producer's problem: reported, but the workers are fine."""
    broker = redis_server.client(db=0)
    broker.lpush(REJECTED_KEY, "not a celery message")
    try:
        report = json.loads(cli(worker_env, "health", "--json"))
    finally:
        broker.delete(REJECTED_KEY)
        broker.close()
    assert report["set_aside_items"] == 1
    assert report["healthy"] is True


def test_health_is_unhealthy_without_a_broker(worker_env: dict[str, str]) -> None:
    env = {
        **worker_env,
        "CELERY_BROKER_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
    }
    completed = run_cli(env, "health", "--json")
    assert completed.returncode == 1
    report = json.loads(completed.stdout)
    assert report["healthy"] is False
    assert "broker unreachable (ConnectionError)" in report["problems"]
    assert REDIS_PASSWORD not in completed.stdout + completed.stderr


def dead_letter(job_id: str, **fields: Any) -> DeadLetter:
    """A letter whose body a replay can send: a full update, as the session worker buries it."""
    return letters.dead_letter(job_id, body=unique_body(), attempts=MAX_ATTEMPTS, **fields)


def test_replay_refuses_a_letter_that_may_have_reached_the_customer_unless_forced(
    worker_env: dict[str, str],
    redis_server: RedisServer,
    zapi_sim: ZapiSimulator,
    producer: Celery,
) -> None:
    tag = uuid.uuid4().hex  # only this test's letters match --contains
    ambiguous = dead_letter(f"amb-{tag}", error=f"timeout {tag}", ambiguous_attempts=1)
    plain = dead_letter(f"plain-{tag}", error=f"HTTP 503 {tag}")
    client = redis_server.client(db=0)  # the session's state Redis
    store = DeadLetterStore(client)
    store.add(ambiguous)
    store.add(plain)

    listed = cli(worker_env, "dead", "list", "--contains", tag)
    assert re.search(rf"amb-{tag} .* ambiguous=1 ", listed)
    assert re.search(rf"plain-{tag} .* ambiguous=0 ", listed)
    shown = json.loads(cli(worker_env, "dead", "show", ambiguous.job_id))
    assert shown["ambiguous_attempts"] == 1

    output = cli(worker_env, "dead", "replay", "--contains", tag, code=1)
    assert (
        f"refused {ambiguous.job_id}: 1 send(s) of unknown outcome (a timeout or reset after "
        "the request left): it may already have reached the customer: replaying may send it "
        "twice; use --force"
    ) in output
    [new_id] = re.findall(rf"replayed {plain.job_id} as (\S+)", output)
    assert "1 dead letters replayed" in output
    assert "1 dead letters refused" in output
    assert f"replayed {ambiguous.job_id}" not in output
    assert store.get(ambiguous.job_id) == ambiguous  # kept, for a decision
    assert store.get(plain.job_id) is None
    assert producer.AsyncResult(new_id).get(timeout=30)["zaapId"]
    assert len(zapi_sim.requests(str(plain.body["messageId"]))) == 1
    assert zapi_sim.requests(str(ambiguous.body["messageId"])) == []

    forced = cli(worker_env, "dead", "replay", ambiguous.job_id, "--force")
    [forced_id] = re.findall(rf"replayed {ambiguous.job_id} as (\S+)", forced)
    assert store.get(ambiguous.job_id) is None
    assert producer.AsyncResult(forced_id).get(timeout=30)["zaapId"]
    assert len(zapi_sim.requests(str(ambiguous.body["messageId"]))) == 1
    client.close()


@pytest.fixture
def private_state(worker_env: dict[str, str]) -> Iterator[tuple[redis.Redis, dict[str, str]]]:
    """A state Redis of its own (its command statistics are this test's alone), and the CLI's
    environment pointing at it."""
    with RedisServer(password=REDIS_PASSWORD) as server:
        client = server.client()
        yield client, {**worker_env, "ZAPI_STATE_REDIS_URL": f"{server.url}/0"}
        client.close()


def zrange_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_zrange", {}).get("calls", 0))


def test_dead_list_reads_pages_until_it_has_enough_and_sums_up_without_a_full_scan(
    private_state: tuple[redis.Redis, dict[str, str]],
) -> None:
    client, env = private_state
    store = DeadLetterStore(client, max_letters=1000)
    start = time.time() - 2000
    rare = {13, 153, 703}  # ranks 10, 150 and 700 once the cap dropped the 3 oldest
    for n in range(1003):
        kind = "InvalidBodyError" if n in rare else "AttemptsExhaustedError"
        store.add(dead_letter(f"job-{n:04}", failed_at=start + n, error_type=kind))
    client.set(LETTER_PREFIX + "job-0503", "not JSON: the command fails if it reads this")

    client.config_resetstat()
    output = cli(env, "dead", "list", "--limit", "3")
    rows = [line.split()[0] for line in output.splitlines()[:-1]]
    assert rows == ["job-0003", "job-0004", "job-0005"]
    assert output.splitlines()[-1] == "3 shown; 1000 dead letters in all, 3 dropped by the cap"
    assert zrange_calls(client) == 1  # one page (of 100) answered it

    client.config_resetstat()
    output = cli(env, "dead", "list", "--limit", "2", "--error-type", "InvalidBodyError")
    assert [line.split()[0] for line in output.splitlines()[:-1]] == ["job-0013", "job-0153"]
    assert zrange_calls(client) == 2  # stopped at the second match, before job-0503


@pytest.fixture
def evicting_broker(redis_server: RedisServer) -> Iterator[None]:
    """The session's Redis with an evicting policy for one test (no maxmemory is set, so
    nothing is actually evicted meanwhile), restored afterwards."""
    client = redis_server.client()
    before = str(client.config_get("maxmemory-policy")["maxmemory-policy"])
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield
    finally:
        client.config_set("maxmemory-policy", before)
        client.close()


@pytest.mark.usefixtures("evicting_broker")
def test_health_is_unhealthy_when_a_redis_may_evict_jobs(
    private_state: tuple[redis.Redis, dict[str, str]],
) -> None:
    client, env = private_state
    client.config_set("maxmemory-policy", "volatile-lru")
    store = DeadLetterStore(client, max_letters=1)
    store.add(dead_letter("first"))
    store.add(dead_letter("second"))

    completed = run_cli(env, "health", "--json")

    assert completed.returncode == 1
    report = json.loads(completed.stdout)
    assert report["healthy"] is False
    assert report["maxmemory_policy"] == "allkeys-lru"
    assert report["state_maxmemory_policy"] == "volatile-lru"
    assert report["state_redis"].startswith("redis://:***@127.0.0.1:")
    assert report["dead_letters"] == 1
    assert report["dead_letters_dropped"] == 1
    [broker, state] = [p for p in report["problems"] if "maxmemory-policy" in p]
    assert broker.startswith("broker Redis has maxmemory-policy allkeys-lru: ")
    assert state.startswith("state Redis has maxmemory-policy volatile-lru: ")
    assert "set maxmemory-policy noeviction" in state
    assert REDIS_PASSWORD not in completed.stdout + completed.stderr


def test_status_says_which_job_an_update_waits_for(
    producer: Celery, zapi_sim: ZapiSimulator, worker_env: dict[str, str]
) -> None:
    """The order's first update is retried (Z-API slow, then 503, twice); the second waits for
    it, and says so."""
    for _ in range(3):  # the CLI must start while the update still waits: slow machines retry
        first = unique_body(orderStatus="processing")
        second = unique_body(orderStatus="shipped", orderRequestId=first["orderRequestId"])
        zapi_sim.script(str(first["messageId"]), *[Fault(status=503, delay=0.9)] * 2)
        head = producer.send_task(STATUS, args=[first])
        waiting = producer.send_task(STATUS, args=[second])
        deadline = time.monotonic() + 10
        while waiting.state != "RETRY" and time.monotonic() < deadline:
            time.sleep(0.05)
        completed = run_cli(worker_env, "status", waiting.id, "--json")
        shown = json.loads(completed.stdout)
        assert waiting.get(timeout=30)["zaapId"]
        assert head.get(timeout=30)["zaapId"]
        if shown["state"] == "RETRY":
            break
    else:
        pytest.fail("the second update was never seen waiting")

    assert completed.returncode == 4
    assert shown["error_type"] == "OrderWait"
    assert shown["error"] == f"waiting for job {head.id} of order {first['orderRequestId']}"


def test_version() -> None:
    completed = subprocess.run([CLI, "--version"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0
    assert re.fullmatch(r"zapi-queue, version \d+\.\d+\.\d+\S*\n", completed.stdout)
