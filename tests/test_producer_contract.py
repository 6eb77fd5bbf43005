"""The public contract, as another application sees it: only celery installed, tasks by name."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from celery import Celery

from tests.bodies import unique_body
from tests.conftest import SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

# Runs in a fresh interpreter that imports nothing of ours: exactly a producer's view.
PRODUCER = textwrap.dedent(
    """
    import json, sys
    from celery import Celery

    broker, backend, task, body = sys.argv[1:5]
    app = Celery(broker=broker, backend=backend)
    result = app.send_task(task, args=[json.loads(body)])
    result.get(timeout=30, propagate=False)
    assert not any(m.startswith(("tasks", "worker", "config")) for m in sys.modules)
    error = result.result if isinstance(result.result, BaseException) else None
    print(json.dumps({
        "state": result.state,
        "result": None if error else result.result,
        "error_type": type(error).__name__ if error else None,
        "error": str(error) if error else None,
    }))
    """
)


def produce(env: dict[str, str], task: str, body: object) -> dict[str, object]:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            PRODUCER,
            env["CELERY_BROKER_URL"],
            env["CELERY_RESULT_BACKEND"],
            task,
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output: dict[str, object] = json.loads(completed.stdout)
    return output


def test_a_bare_producer_enqueues_by_name_and_reads_the_reply(worker_env: dict[str, str]) -> None:
    outcome = produce(worker_env, "zapi.order_payment_update", unique_body())
    assert outcome["state"] == "SUCCESS"
    reply = outcome["result"]
    assert isinstance(reply, dict)
    assert set(reply) == {"zaapId", "messageId", "id"}


def test_a_bare_producer_reads_a_useful_error(worker_env: dict[str, str]) -> None:
    body = unique_body(orderStatus="delivered")
    body["order"]["products"][0]["quantity"] = -1
    outcome = produce(worker_env, "zapi.order_status_update", body)
    assert outcome["state"] == "FAILURE"
    assert outcome["error_type"] == "InvalidBodyError"
    error = str(outcome["error"])
    assert "orderStatus: Input should be 'pending', 'processing'" in error
    assert "order.products[0].quantity: Input should be greater than 0" in error
    assert not any(secret in error for secret in SECRETS)


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        ([], {}, "got 0 positional arguments"),
        ([unique_body(), unique_body()], {}, "got 2 positional arguments"),
        ([unique_body()], {"idempotency": "k"}, "got unknown kwargs: idempotency"),
    ],
    ids=["no body", "two bodies", "unknown kwarg"],
)
def test_a_wrong_call_shape_fails_at_once_saying_what_the_task_expects(
    producer: Celery, args: list[object], kwargs: dict[str, object], says: str
) -> None:
    result = producer.send_task("zapi.order_status_update", args=args, kwargs=kwargs)
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "InvalidBodyError"
    text = str(result.result)
    assert "zapi.order_status_update takes one positional argument, the body" in text
    assert "idempotency_key, sequence, force" in text
    assert says in text


def test_the_body_may_also_be_passed_by_name(producer: Celery) -> None:
    result = producer.send_task("zapi.order_payment_update", kwargs={"body": unique_body()})
    assert "zaapId" in result.get(timeout=30)
