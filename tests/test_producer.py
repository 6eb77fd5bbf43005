"""The Python producer API: validation in the caller's process, single and bulk enqueue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.zapi_sim import ZapiSimulator
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.producer import Producer
from tests.bodies import unique_body


@pytest.fixture(scope="module")
def api(worker_env: dict[str, str]) -> Iterator[Producer]:
    producer = Producer(
        broker_url=worker_env["CELERY_BROKER_URL"],
        result_backend=worker_env["CELERY_RESULT_BACKEND"],
    )
    yield producer
    producer.close()


@pytest.mark.e2e
@pytest.mark.usefixtures("worker")
def test_enqueue_and_get_result(api: Producer, zapi_sim: ZapiSimulator) -> None:
    body = unique_body(paymentStatus="paid")
    reply = api.get_result(api.enqueue_payment_update(body), timeout=30)

    [request] = zapi_sim.requests(body["messageId"])
    assert request.path.endswith("/order-payment-update")
    assert request.json == body
    assert set(reply) == {"zaapId", "messageId", "id"}


def test_an_invalid_body_is_refused_in_the_callers_process(api: Producer) -> None:
    with pytest.raises(InvalidBodyError, match=r"orderStatus: Input should be"):
        api.enqueue_status_update(unique_body(orderStatus="lost"))


@pytest.mark.e2e
@pytest.mark.usefixtures("worker")
def test_bulk_enqueue_reports_bad_bodies_and_delivers_the_rest(
    api: Producer, zapi_sim: ZapiSimulator
) -> None:
    bodies = [unique_body() for _ in range(20)]
    bodies[3] = unique_body(phone="not a phone")
    bodies[11] = {"messageId": "only"}
    outcome = api.enqueue_many(Endpoint.ORDER_STATUS_UPDATE, bodies)

    assert [index for index, _ in outcome.rejected] == [3, 11]
    assert "phone: must be 10 to 15 digits" in outcome.rejected[0][1]
    assert len(outcome.job_ids) == 18
    replies = [api.get_result(job_id, timeout=30) for job_id in outcome.job_ids]
    assert all(reply["zaapId"] for reply in replies)
    sent = [b for i, b in enumerate(bodies) if i not in (3, 11)]
    assert all(len(zapi_sim.requests(b["messageId"])) == 1 for b in sent)
    assert zapi_sim.requests(bodies[3]["messageId"]) == []


def test_the_producer_needs_no_worker_settings() -> None:
    """Importable with celery and pydantic only: no config, no worker, no Z-API credentials."""
    import subprocess
    import sys

    code = (
        "import sys; import tasks.contract.producer; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('config', 'worker', 'pydantic_settings', 'httpx', 'redis', 'tenacity')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
