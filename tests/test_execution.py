"""One execution in-process: the Z-API client over ``httpx.MockTransport``, a real Redis, no
Celery worker. Each re-scheduling is the Celery retry the execution asks for; the test runs
the next execution with the headers that retry carries (its countdown is read, not slept).

What these show in milliseconds, the end-to-end suites show through a real worker: the retry
policy (tests/test_faults_zapi.py), short-form completion (tests/test_ordering_e2e.py) and
burial (tests/test_deadletter.py).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
import redis
from celery.exceptions import Reject, Retry
from pydantic import SecretStr

from config import Settings, ZapiCredentials
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import (
    AttemptsExhaustedError,
    InvalidBodyError,
    UnknownOrderError,
    ZapiRejectedError,
    ZapiUnavailableError,
)
from tasks.delivery import RateLimitWait, StateUnavailableWait, UnknownOrderWait
from tasks.execution import deliver
from tasks.execution.burial import PERSIST_FIRST_WAIT, PERSIST_MAX_WAIT, persist
from tasks.execution.deps import Deps, InstanceDeps
from tasks.execution.headers import (
    ATTEMPTS_HEADER,
    FIRST_ATTEMPT_HEADER,
    LOOKING_SINCE_HEADER,
    LOOKUPS_HEADER,
)
from tasks.execution.job import Job
from tasks.instance_guard import InstanceGuard
from tasks.state.book import OrderBook, snapshot_of_update
from tasks.state.deadletter import DeadLetterStore
from tasks.state.orders import OrderLines
from tasks.state.ratelimit import RateLimiter
from tasks.state.sends import refusals_per_minute, sends_per_minute
from tasks.state.store import connect
from tasks.zapi.client import ZapiClient
from tests.bodies import unique_body, unique_key
from tests.conftest import empty_db_fixture

DB = 13
STATUS = Endpoint.ORDER_STATUS_UPDATE
_instances = itertools.count()


@dataclass
class FakeRequest:
    """What an execution reads of Celery's task request: the job's id and its headers."""

    id: str
    headers: dict[str, Any] | None


@dataclass
class FakeTask:
    """What an execution uses of its task: the name, the request, and ``retry``, which Celery
    raises (here it returns the same exception; the execution raises it either way)."""

    name: str
    request: FakeRequest
    retried: list[dict[str, Any]] = field(default_factory=list)

    def retry(self, *, exc: Exception, countdown: float, headers: dict[str, Any]) -> Retry:
        self.retried.append({"exc": exc, "countdown": countdown, "headers": headers})
        return Retry(exc=exc, when=cast("Any", countdown))  # Celery: "when", any number


@dataclass
class ZapiMock:
    """The answers Z-API gives, in order (the last repeats; an exception is raised by the
    transport), and the bodies it received."""

    answers: list[httpx.Response | Exception]
    received: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(json.loads(request.content))
        answer = self.answers[min(len(self.received), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def reply(n: int = 1) -> httpx.Response:
    return httpx.Response(200, json={"zaapId": f"Z{n}", "messageId": f"M{n}", "id": f"M{n}"})


@dataclass
class Stack:
    """An execution's collaborators for one fresh instance, over one Redis database."""

    deps: Deps
    at: InstanceDeps
    zapi: ZapiMock
    endpoint: Endpoint = STATUS
    job_id: str = field(default_factory=lambda: unique_key("job"))

    def run(
        self, body: Any, headers: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[FakeTask, dict[str, Any] | BaseException]:
        """One execution of the job: its result, or what it raised."""
        task = FakeTask(self.endpoint.task_name, FakeRequest(self.job_id, headers))
        try:
            return task, deliver(task, self.endpoint, (body,), kwargs, self.deps)
        except Exception as exc:  # noqa: BLE001 - the test reads what was raised
            return task, exc

    def letter_of(self) -> Any:
        return self.deps.dead_letters.get(self.job_id)


state = empty_db_fixture(DB, name="state")


def make_stack(
    client: redis.Redis,
    answers: list[httpx.Response | Exception],
    *,
    instance_id: str | None = None,
    **overrides: Any,
) -> Stack:
    """An execution's collaborators for a fresh instance (or ``instance_id``) over ``client``."""
    instance_id = instance_id or f"exec-{next(_instances)}"
    settings = Settings(
        celery_broker_url=SecretStr("redis://127.0.0.1:1/0"),
        zapi_instance_id=instance_id,
        zapi_instance_token=SecretStr("itok-exec"),
        zapi_client_token=SecretStr("ctok-exec"),
        zapi_retry_backoff=0.05,
        zapi_retry_backoff_max=5.0,
        zapi_rate_limit=1000.0,
        **overrides,
    )
    instance = settings.instances()["default"]
    zapi = ZapiMock(answers)
    client_ = ZapiClient(
        "http://zapi.test",
        ZapiCredentials(instance_id, SecretStr("itok-exec"), SecretStr("ctok-exec")),
        transport=httpx.MockTransport(zapi),
    )
    at = InstanceDeps.build(
        settings,
        client,
        instance,
        zapi=client_,
        limiter=RateLimiter(
            client,
            instance_id=instance_id,
            rate=1000.0,
            burst=50,
            penalty_base=settings.zapi_retry_backoff,
            penalty_cap=settings.zapi_retry_backoff_max,
        ),
        guard=InstanceGuard(capacity=4, trip_after=settings.zapi_breaker_failures),
        lines=OrderLines(client, instance_id=instance_id, ttl=3600, absence=600, settle=0.0),
        book=OrderBook(client, instance_id=instance_id, ttl=3600),
    )
    deps = Deps(
        settings=settings,
        redis=client,
        dead_letters=DeadLetterStore(client),
        of=lambda _instance: at,
    )
    return Stack(deps, at, zapi)


def run_until_done(
    stack: Stack, body: Any, *, runs: int = 5, **kwargs: Any
) -> tuple[list[FakeTask], dict[str, Any] | BaseException]:
    """Execute the job again with the headers of each retry it asks for, until it ends."""
    headers: dict[str, Any] | None = None
    tasks: list[FakeTask] = []
    for _ in range(runs):
        task, ended = stack.run(body, headers, **kwargs)
        tasks.append(task)
        if not isinstance(ended, Retry):
            return tasks, ended
        headers = task.retried[-1]["headers"]
    raise AssertionError(f"still re-scheduled after {runs} executions")


def test_a_5xx_is_retried_with_an_attempt_used_then_delivered(state: redis.Redis) -> None:
    stack = make_stack(state, [httpx.Response(503, text="busy"), reply()])
    body = unique_body()
    tasks, ended = run_until_done(stack, body)
    assert ended == {"zaapId": "Z1", "messageId": "M1", "id": "M1"}
    assert len(tasks) == 2
    first = tasks[0].retried[0]
    assert isinstance(first["exc"], ZapiUnavailableError)
    assert first["headers"][ATTEMPTS_HEADER] == 1  # one attempt used
    assert 0 <= first["countdown"] <= 0.05  # the first backoff's ceiling: ZAPI_RETRY_BACKOFF
    assert stack.zapi.received == [body, body]
    # Recorded: the same job again is answered from the record, nothing sent.
    _, again = stack.run(body)
    assert again == ended
    assert len(stack.zapi.received) == 2


def test_a_429_pauses_the_instance_without_using_an_attempt(state: redis.Redis) -> None:
    stack = make_stack(
        state, [httpx.Response(429, headers={"Retry-After": "3"}), reply()], zapi_rate_max_wait=0.5
    )
    task, ended = stack.run(unique_body())
    assert isinstance(ended, Retry)
    deferred = task.retried[0]
    assert isinstance(deferred["exc"], RateLimitWait)
    assert deferred["headers"][ATTEMPTS_HEADER] == 0
    assert 2.5 <= deferred["countdown"] <= 3.0
    assert 2.5 <= stack.at.limiter.paused_for() <= 3.0
    # Counted for the console's chart of the last hour (the one send too, before it).
    instance_id = stack.at.instance.instance_id
    assert sum(refusals_per_minute(state, instance_id, minutes=2)) == 1
    assert sum(sends_per_minute(state, instance_id, minutes=2)) == 1
    # Another job of the instance waits for the pause instead of sending.
    other = Stack(stack.deps, stack.at, stack.zapi)
    task, ended = other.run(unique_body())
    assert isinstance(ended, Retry)
    assert isinstance(task.retried[0]["exc"], RateLimitWait)
    assert len(stack.zapi.received) == 1


def test_a_spent_budget_ends_in_failure_with_a_dead_letter(state: redis.Redis) -> None:
    stack = make_stack(state, [httpx.Response(500, text="down")], zapi_max_attempts=2)
    body = unique_body()
    tasks, ended = run_until_done(stack, body)
    assert isinstance(ended, AttemptsExhaustedError)
    assert "after 2 attempts" in str(ended)
    assert "(ZAPI_MAX_ATTEMPTS)" in str(ended)
    assert len(tasks) == 2
    assert len(stack.zapi.received) == 2
    letter = stack.letter_of()
    assert letter is not None
    assert letter.error_type == "AttemptsExhaustedError"
    assert letter.attempts == 2
    assert letter.body == body


def test_the_time_budget_ends_a_job_before_its_attempts(state: redis.Redis) -> None:
    stack = make_stack(state, [httpx.Response(503)], zapi_give_up_after=10.0)
    headers = {FIRST_ATTEMPT_HEADER: time.time() - 11}
    _, ended = stack.run(unique_body(), headers)
    assert isinstance(ended, AttemptsExhaustedError)
    assert "(ZAPI_GIVE_UP_AFTER)" in str(ended)
    assert stack.letter_of() is not None


def test_a_short_update_is_completed_from_the_order_book(state: redis.Redis) -> None:
    stack = make_stack(state, [reply()])
    full = unique_body(orderStatus="processing", paymentStatus="paid")
    stack.at.book.save(snapshot_of_update(full, stack.at.instance.instance_id))
    _, ended = stack.run({"orderRequestId": full["orderRequestId"], "orderStatus": "shipped"})
    assert ended == {"zaapId": "Z1", "messageId": "M1", "id": "M1"}
    [sent] = stack.zapi.received
    assert sent["orderStatus"] == "shipped"
    assert sent["paymentStatus"] == "paid"  # the other status, as the order shows it
    assert sent["phone"] == full["phone"]
    assert sent["order"] == full["order"]


def test_a_short_update_waits_for_its_order_then_is_buried(state: redis.Redis) -> None:
    stack = make_stack(state, [reply()], zapi_order_wait=60.0)
    short = {"orderRequestId": "4N8NOTYET", "orderStatus": "shipped"}
    task, ended = stack.run(short)
    assert isinstance(ended, Retry)
    wait = task.retried[0]
    assert isinstance(wait["exc"], UnknownOrderWait)
    assert wait["headers"][LOOKUPS_HEADER] == 1
    assert wait["headers"][ATTEMPTS_HEADER] == 0
    assert 0.05 <= wait["countdown"] <= 1.0  # the first look's backoff ceiling
    assert wait["headers"][LOOKING_SINCE_HEADER] <= time.time()
    _, ended = stack.run(short, {**wait["headers"], LOOKING_SINCE_HEADER: time.time() - 61})
    assert isinstance(ended, UnknownOrderError)
    assert stack.zapi.received == []
    letter = stack.letter_of()
    assert letter is not None
    assert letter.error_type == "UnknownOrderError"
    assert letter.body == short


def test_a_refusal_is_buried_at_once(state: redis.Redis) -> None:
    stack = make_stack(state, [httpx.Response(400, json={"error": "bad phone"})])
    body = unique_body()
    tasks, ended = run_until_done(stack, body)
    assert isinstance(ended, ZapiRejectedError)
    assert len(tasks) == 1
    letter = stack.letter_of()
    assert letter is not None
    assert (letter.error_type, letter.attempts, letter.body) == ("ZapiRejectedError", 1, body)


def test_an_invalid_body_is_buried_unsent(state: redis.Redis) -> None:
    stack = make_stack(state, [reply()])
    body = unique_body(orderStatus="teleported")
    _, ended = stack.run(body, sequence=3)
    assert isinstance(ended, InvalidBodyError)
    assert stack.zapi.received == []
    letter = stack.letter_of()
    assert letter is not None
    assert (letter.error_type, letter.attempts, letter.kwargs) == (
        "InvalidBodyError",
        0,
        {"sequence": 3},
    )


def unreachable_redis() -> redis.Redis:
    """A client of a port nobody listens on, without retries: every call fails at once."""
    return connect("redis://127.0.0.1:1/0", retries=0)


def test_a_redis_error_before_the_send_puts_the_job_back(state: redis.Redis) -> None:
    broken = make_stack(unreachable_redis(), [reply()])
    task, ended = broken.run(unique_body())
    assert isinstance(ended, Retry)
    put_back = task.retried[0]
    assert isinstance(put_back["exc"], StateUnavailableWait)
    assert put_back["headers"]["zapi-put-backs"] == 1
    assert put_back["headers"][ATTEMPTS_HEADER] == 0
    assert 0 <= put_back["countdown"] <= 1.0
    assert broken.zapi.received == []


def test_a_dead_letter_redis_refuses_hands_the_job_back(state: redis.Redis) -> None:
    stack = make_stack(state, [httpx.Response(400)], zapi_persist_patience=0.05)
    refusing_letters = DeadLetterStore(unreachable_redis())
    refusing = Stack(
        Deps(stack.deps.settings, state, refusing_letters, stack.deps.of), stack.at, stack.zapi
    )
    _, ended = refusing.run(unique_body())
    assert isinstance(ended, Reject)
    assert vars(ended)["requeue"] is True  # not in celery's stubs
    assert stack.letter_of() is None


def test_a_write_that_must_not_be_lost_is_retried_with_the_backoff(
    state: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(state, [reply()])
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    refusals = iter([True] * 6 + [False])

    def write() -> None:
        if next(refusals):
            raise redis.ResponseError("OOM command not allowed")

    job = Job(
        FakeTask(stack.endpoint.task_name, FakeRequest("j", None)), STATUS, stack.deps, (), {}
    )
    assert persist(job, "record it", write)
    assert PERSIST_MAX_WAIT == 1.0
    limits = [min(PERSIST_MAX_WAIT, PERSIST_FIRST_WAIT * 2**i) for i in range(6)]
    assert len(waits) == 6
    assert all(0 <= w <= c for w, c in zip(waits, limits, strict=True))


def test_a_bug_is_buried_with_its_traceback_logged(
    state: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(state, [RuntimeError("a bug in the send path")])
    _, ended = stack.run(unique_body())
    assert isinstance(ended, RuntimeError)
    letter = stack.letter_of()
    assert letter is not None
    assert (letter.error_type, letter.error) == ("RuntimeError", "a bug in the send path")
    [logged] = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert logged.exc_info is not None
    assert logged.exc_info[1] is ended
