"""The broker door (issue #26): whatever a message holds, it ends within seconds in exactly one
place (delivered once, FAILURE with a dead letter, or set aside when it is no message at all),
and it changes nothing for any other message.

Generated batches (hypothesis) mix good updates with messages nobody chose: any call shape,
kwargs of every JSON type and size, mistyped task names, bodies the worker cannot decode, raw
items that are not messages; some of them name the order of a good update, so a bad message
that kept its order's line would hold a good one back. A real worker, a real Redis and the
fake Z-API take them; the test asserts the invariants on what each one left behind.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.state.deadletter import DeadLetterStore
from tests.bodies import unique_body
from tests.cli import run_cli
from tests.conftest import SECRETS, producer_for, quick_env
from worker.fetch_scripts import REJECTED_KEY

pytestmark = pytest.mark.e2e

STATUS = "zapi.order_status_update"
PAYMENT = "zapi.order_payment_update"
#: Databases of this file's worker (broker and state; results in the next one).
DB = 13
#: How long every message of a batch has to reach its end (bad ones end at once; a short
#: update naming no known order waits ZAPI_ORDER_WAIT, 2 s here).
SETTLE_WITHIN = 60.0
#: Keys the broker keeps without a TTL, each bounded by the jobs in flight or queued
#: (worker/fetch_scripts.py and kombu document them).
BROKER_KEYS = ("celery", "unacked", "unacked_index", "unacked_mutex", "_kombu.", "_kombu.binding.")
#: Our keys that are bounded by a cap instead of a TTL (tasks/state/deadletter.py).
CAPPED_KEYS = ("zapi-queue:dead:trimmed",)


def phone() -> str:
    """A distinctive 13-digit phone: if it appears in a log, it leaked."""
    return "55" + str(uuid.uuid4().int)[:11]


@pytest.fixture(scope="module")
def door_env(redis_server: RedisServer, zapi_sim: ZapiSimulator) -> dict[str, str]:
    return quick_env(
        redis_server.url,
        zapi_sim,
        db=DB,
        zapi_order_wait="2",
        zapi_timeout="2",
        zapi_rate_burst="100",
    )


@pytest.fixture(scope="module")
def door_worker(
    door_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("door") / "worker.log"
    with WorkerProcess(door_env, log, loglevel="DEBUG") as process:
        yield process


@pytest.fixture(scope="module")
def door_producer(door_env: dict[str, str]) -> Iterator[Celery]:
    with producer_for(door_env) as app:
        yield app


@pytest.fixture(scope="module")
def state(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(db=DB)
    yield client
    client.close()


# -- what a batch is made of --------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=10,
)
kwarg_names = st.sampled_from(
    ["idempotency_key", "sequence", "force", "instance", "body", "countdown", "x"]
)
#: Our own headers (tasks/execution/headers.py, tasks/order_line.py) as a producer may mangle: a
#: value of the wrong shape counts as absent, so the job is still delivered once, at once.
not_numbers = json_values.filter(lambda v: not isinstance(v, int | float) or isinstance(v, bool))
mangled_headers = st.dictionaries(
    st.sampled_from(
        ["zapi-attempts", "zapi-slot", "zapi-first-attempt", "zapi-put-backs", "zapi-order-wait"]
    ),
    not_numbers | st.lists(json_scalars, min_size=3, max_size=3),
    max_size=3,
) | st.dictionaries(st.just("zapi-unrecorded"), json_values, max_size=1)
mistyped = st.sampled_from(["zapi.order_status_updat", "zapi.ORDER_STATUS_UPDATE", "", "x" * 300])


@st.composite
def bad_bodies(draw: st.DrawFn, orders: list[str]) -> Any:
    """A body nobody chose; half of the dicts name a good update's order and carry a phone."""
    value = draw(json_values)
    if isinstance(value, dict) and orders and draw(st.booleans()):
        value = {**value, "orderRequestId": draw(st.sampled_from(orders)), "phone": phone()}
    return value


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Good updates, each of its own order, and bad messages of every kind, interleaved."""
    good: list[dict[str, Any]] = [
        {
            "kind": "good",
            "body": unique_body(phone=phone()),
            "id": str(uuid.uuid4()),
            "headers": draw(mangled_headers),
        }
        for _ in range(draw(st.integers(2, 5)))
    ]
    orders = [item["body"]["orderRequestId"] for item in good]
    bad = []
    for _ in range(draw(st.integers(3, 10))):
        kind = draw(st.sampled_from(["call", "kwargs", "name", "undecodable", "raw"]))
        item: dict[str, Any] = {"kind": kind, "id": str(uuid.uuid4())}
        if kind == "call":
            item["args"] = draw(st.lists(bad_bodies(orders), max_size=3))
            item["kwargs"] = draw(st.dictionaries(kwarg_names, json_values, max_size=3))
        elif kind == "kwargs":
            body = unique_body(phone=phone(), orderRequestId=draw(st.sampled_from(orders)))
            item["args"] = [body]
            item["kwargs"] = draw(
                st.dictionaries(kwarg_names, json_values, min_size=1, max_size=3).filter(
                    lambda kw: any(_out_of_range(k, v) for k, v in kw.items())
                )
            )
        elif kind == "name":
            item["task"] = draw(mistyped)
            item["args"] = [unique_body(phone=phone())]
        elif kind == "raw":
            item["raw"] = draw(st.text(max_size=60) | st.just("{}") | st.just("[1, 2]"))
        bad.append(item)
    return draw(st.permutations(good + bad))


def _out_of_range(name: str, value: Any) -> bool:
    """Whether this kwarg breaks the contract (so its job must fail)."""
    if name in ("countdown", "x"):
        return True
    if name == "body":
        return True  # a second body beside the positional one
    if value is None:
        return False
    if name == "sequence":
        return not (type(value) is int and 0 <= value < 2**53)
    if name == "force":
        return not isinstance(value, bool)
    if name == "idempotency_key":
        return not (isinstance(value, str) and 0 < len(value) <= 200)
    return bool(value != "default")  # instance: no other alias exists in this fleet


def _phones(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["phone"]] if isinstance(value.get("phone"), str) else []
        return found + [p for v in value.values() for p in _phones(v)]
    if isinstance(value, list):
        return [p for v in value for p in _phones(v)]
    return []


def publish(producer: Celery, state: redis.Redis, items: list[dict[str, Any]]) -> None:
    for item in items:
        kind = item["kind"]
        if kind == "good":
            producer.send_task(
                STATUS, args=[item["body"]], task_id=item["id"], headers=item["headers"]
            )
        elif kind in ("call", "kwargs", "name"):
            producer.send_task(
                item.get("task", STATUS),
                args=item["args"],
                kwargs=item.get("kwargs", {}),
                task_id=item["id"],
            )
        elif kind == "undecodable":
            state.lpush("celery", undecodable_message(item["id"]))
        else:
            state.lpush("celery", item["raw"])


def undecodable_message(job_id: str) -> str:
    """A kombu envelope whose JSON body is not JSON: Celery's consumer cannot decode it."""
    return json.dumps(
        {
            "body": base64.b64encode(b'\xff[{"phone": "5511999990000"').decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "py", "task": STATUS, "id": job_id, "argsrepr": "?"},
            "properties": {
                "correlation_id": job_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "celery"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def final_states(producer: Celery, ids: list[str], within: float) -> dict[str, AsyncResult[Any]]:
    deadline = time.monotonic() + within
    results: dict[str, AsyncResult[Any]] = {i: AsyncResult(i, app=producer) for i in ids}
    while time.monotonic() < deadline:
        if all(r.state in ("SUCCESS", "FAILURE") for r in results.values()):
            return results
        time.sleep(0.2)
    pending = {i: r.state for i, r in results.items() if r.state not in ("SUCCESS", "FAILURE")}
    raise AssertionError(f"not ended within {within}s: {pending}")


def assert_every_key_is_bounded(state: redis.Redis) -> None:
    for raw in state.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        if key.startswith(BROKER_KEYS) or key in CAPPED_KEYS or key == REJECTED_KEY:
            continue
        assert state.ttl(raw) > 0, f"{key} has no TTL and no registered cap"


# -- the property ---------------------------------------------------------------------------


#: A tenth of the profile's examples: each one is a batch through a real worker (4 in `make
#: test`, 200 in `make fuzz`).
BATCHES = max(2, settings().max_examples // 10)


@settings(max_examples=BATCHES, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches())
def test_every_message_ends_in_one_place_and_harms_no_other(
    batch: list[dict[str, Any]],
    door_worker: WorkerProcess,
    door_producer: Celery,
    state: redis.Redis,
    zapi_sim: ZapiSimulator,
) -> None:
    rejected_before = state.llen(REJECTED_KEY)
    publish(door_producer, state, batch)
    with_ids = [item for item in batch if item["kind"] != "raw"]
    results = final_states(door_producer, [item["id"] for item in with_ids], SETTLE_WITHIN)
    letters = DeadLetterStore(state)

    for item in with_ids:
        result = results[item["id"]]
        if item["kind"] == "good":
            assert result.state == "SUCCESS", (item, result.result)
            assert len(zapi_sim.requests(item["body"]["messageId"])) == 1
            continue
        assert result.state == "FAILURE", (item, result.result)
        error_type = type(result.result).__name__
        if error_type != "StaleUpdateError":
            letter = letters.get(item["id"])
            assert letter is not None, (item, error_type)
            assert letter.error_type == error_type
        if item["kind"] == "name":
            assert error_type == "UnknownTaskError"
        if item["kind"] == "undecodable":
            assert error_type == "InvalidMessageError"
        for body in item.get("args", []):
            if isinstance(body, dict) and isinstance(body.get("messageId"), str):
                assert zapi_sim.requests(body["messageId"]) == [], item
    raw_items = sum(item["kind"] == "raw" for item in batch)
    assert state.llen(REJECTED_KEY) >= min(rejected_before + raw_items, 1000)

    log = door_worker.log_text()
    for item in batch:
        for leaked in _phones(item.get("args", [])) + _phones(item.get("body")):
            assert leaked not in log, f"phone {leaked} in the worker log"
    assert "5511999990000" not in log
    for secret in SECRETS:
        assert secret not in log
    assert_nothing_left_unacked(state)
    assert_every_key_is_bounded(state)


def assert_nothing_left_unacked(state: redis.Redis, within: float = 5.0) -> None:
    """Every message ended, so none stays in kombu's unacked records (acks follow results)."""
    deadline = time.monotonic() + within
    while state.hlen("unacked") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.hlen("unacked") == 0


# -- chosen cases ---------------------------------------------------------------------------


def test_poison_queued_before_the_worker_starts_harms_none_of_its_batch(
    zapi_sim: ZapiSimulator, tmp_path: Path
) -> None:
    """The issue's reproduction: 16 poison jobs among 48 good ones, all queued before the
    worker starts, so that they are fetched and claimed together. Before, a sequence of 10**400
    broke its batch's claim (a ZADD of an unstorable score after the LREMs) and stranded the
    good jobs claimed before it."""
    with RedisServer() as server:
        poison_burst(server, zapi_sim, tmp_path)


def poison_burst(server: RedisServer, zapi_sim: ZapiSimulator, tmp_path: Path) -> None:
    env = stack_env(
        server.url, zapi_sim, worker_concurrency="8", zapi_rate_limit="1000", zapi_rate_burst="100"
    )
    state = server.client()
    app = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
    good = [unique_body(phone=phone()) for _ in range(48)]
    good_ids, poison_ids = [], []
    for n, body in enumerate(good):
        good_ids.append(app.send_task(STATUS, args=[body]).id)
        if n % 3 == 0:  # a poison job in the same order as the good one before it
            order = {"orderRequestId": body["orderRequestId"]}
            kinds: list[tuple[list[Any], dict[str, Any]]] = [
                ([unique_body(**order)], {"sequence": 10**400}),
                ([unique_body(**order), unique_body(**order)], {}),
                ([unique_body(**order)], {"force": "yes", "retries": 3}),
                ([], {}),
            ]
            poison = kinds[n // 3 % 4]
            poison_ids.append(app.send_task(PAYMENT, args=poison[0], kwargs=poison[1]).id)
    try:
        with WorkerProcess(env, tmp_path / "worker.log"):
            results = final_states(app, good_ids + poison_ids, SETTLE_WITHIN)
            assert_nothing_left_unacked(state)
        for job_id, body in zip(good_ids, good, strict=True):
            assert results[job_id].state == "SUCCESS"
            assert len(zapi_sim.requests(body["messageId"])) == 1
        for job_id in poison_ids:
            assert results[job_id].state == "FAILURE"
            assert type(results[job_id].result).__name__ == "InvalidBodyError"
            assert DeadLetterStore(state).get(job_id) is not None
        assert state.llen("celery") == 0
    finally:
        state.close()
        app.close()


def test_an_orders_next_update_goes_at_once_after_a_wrong_call_shape(
    door_worker: WorkerProcess, door_producer: Celery, state: redis.Redis
) -> None:
    first = unique_body(orderStatus="processing")
    order = {"orderRequestId": first["orderRequestId"]}
    wrong = door_producer.send_task(STATUS, args=[first, unique_body(**order)])
    assert "got 2 positional arguments" in str(wrong.get(timeout=10, propagate=False))
    letter = DeadLetterStore(state).get(wrong.id)
    assert letter is not None
    assert letter.body == first  # what came, to look at and replay
    started = time.monotonic()
    nxt = door_producer.send_task(STATUS, args=[unique_body(orderStatus="shipped", **order)])
    assert nxt.get(timeout=10)["zaapId"]
    assert time.monotonic() - started < 5  # not after longest_absence


def test_a_mistyped_task_name_is_a_dead_letter_and_logs_no_body(
    door_worker: WorkerProcess,
    door_producer: Celery,
    state: redis.Redis,
    door_env: dict[str, str],
    zapi_sim: ZapiSimulator,
) -> None:
    body = unique_body(phone=phone())
    result = door_producer.send_task(
        "zapi.order_status_updat", args=[body], kwargs={"idempotency_key": "k-1", "junk": 1}
    )
    result.get(timeout=10, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "UnknownTaskError"
    assert "task 'zapi.order_status_updat' is not registered" in str(result.result)
    letter = DeadLetterStore(state).get(result.id)
    assert letter is not None
    assert (letter.task, letter.body, letter.kwargs) == (
        "zapi.order_status_updat",
        body,
        {"idempotency_key": "k-1"},
    )
    log = door_worker.log_text()
    assert body["phone"] not in log
    assert f"job {result.id}: task 'zapi.order_status_updat' is not registered" in log
    assert "Received unregistered task" not in log

    replayed = run_cli(door_env, "dead", "replay", result.id, "--as-task", STATUS)
    assert replayed.returncode == 0, replayed.stderr
    [new_id] = re.findall(rf"replayed {result.id} as (\S+)", replayed.stdout)
    assert door_producer.AsyncResult(new_id).get(timeout=30)["zaapId"]
    assert len(zapi_sim.requests(body["messageId"])) == 1


def test_a_countdown_keeps_its_place_in_its_orders_line(
    door_worker: WorkerProcess, door_producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    """A waits on its countdown; B, enqueued after it for the same order, waits for A."""
    first = unique_body(orderStatus="processing")
    later = unique_body(orderStatus="shipped", orderRequestId=first["orderRequestId"])
    a = door_producer.send_task(STATUS, args=[first], countdown=4)
    time.sleep(0.5)  # A is fetched (and takes its place) first
    b = door_producer.send_task(STATUS, args=[later])
    assert a.get(timeout=30)["zaapId"]
    assert b.get(timeout=30)["zaapId"]
    (sent_a,) = zapi_sim.requests(first["messageId"])
    (sent_b,) = zapi_sim.requests(later["messageId"])
    assert sent_a.received_at < sent_b.received_at


def test_a_reply_redis_will_not_take_is_recorded_later_and_never_sent_twice(
    zapi_sim: ZapiSimulator, tmp_path: Path
) -> None:
    """The state Redis refuses every write while the update is on its way and for longer than
    ZAPI_PERSIST_PATIENCE after: the job is not acked SUCCESS without its record (a repeat of
    its key would then be sent again); it is re-scheduled carrying its reply, recorded once
    Redis takes writes again, and never sent twice."""
    with RedisServer() as broker, RedisServer() as state_server:
        env = stack_env(
            broker.url,
            zapi_sim,
            zapi_state_redis_url=state_server.url + "/0",
            zapi_persist_patience="1",
            worker_concurrency="4",
        )
        app = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        admin = state_server.client()
        body = unique_body()
        key = {"idempotency_key": f"reply-{uuid.uuid4()}"}
        try:
            with WorkerProcess(env, tmp_path / "worker.log") as worker:
                zapi_sim.latency = 1.5
                result = app.send_task(STATUS, args=[body], kwargs=key)
                deadline = time.monotonic() + 10
                while not zapi_sim.requests(body["messageId"]) and time.monotonic() < deadline:
                    time.sleep(0.05)
                admin.config_set("maxmemory", 1)  # noeviction: every write refused
                time.sleep(5)
                assert result.state != "SUCCESS"
                admin.config_set("maxmemory", 0)
                reply = result.get(timeout=30)
                again = app.send_task(STATUS, args=[body], kwargs=key).get(timeout=30)
                log = worker.log_text()
        finally:
            zapi_sim.latency = 0
            admin.config_set("maxmemory", 0)
            admin.close()
            app.close()
    assert again == reply
    assert len(zapi_sim.requests(body["messageId"])) == 1
    assert "recording its delivered reply again (not sent again)" in log


@pytest.mark.timeout(200)
def test_a_countdown_longer_than_the_longest_absence_keeps_its_place(
    zapi_sim: ZapiSimulator, tmp_path: Path
) -> None:
    """The issue's case at its own scale: A waits on a countdown longer than the line's horizon
    (``longest_absence``, 70 s with these settings), B of the same order comes after it. B used
    to take A for lost, go first, and A then failed as stale: both must go, A first."""
    with RedisServer() as server:
        env = stack_env(
            server.url,
            zapi_sim,
            celery_visibility_timeout="10",
            celery_worker_lease="3",
            zapi_retry_backoff_max="5",
            zapi_rate_max_wait="0",
            zapi_timeout="1",
            zapi_connect_timeout="1",
        )
        app = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        first = unique_body(orderStatus="processing")
        later = unique_body(orderStatus="shipped", orderRequestId=first["orderRequestId"])
        try:
            with WorkerProcess(env, tmp_path / "worker.log"):
                a = app.send_task(STATUS, args=[first], countdown=75)
                time.sleep(1)  # A is fetched, and takes its place, first
                b = app.send_task(STATUS, args=[later])
                assert b.get(timeout=110)["zaapId"]
                assert a.get(timeout=10)["zaapId"]
        finally:
            app.close()
    (sent_a,) = zapi_sim.requests(first["messageId"])
    (sent_b,) = zapi_sim.requests(later["messageId"])
    assert sent_a.received_at < sent_b.received_at
