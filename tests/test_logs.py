"""One log line per attempt, readable by default and JSON when asked; never a token or phone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.zapi_sim import Fault
from tests.bodies import unique_body
from tests.conftest import SECRETS
from tests.faults import fault_stack

pytestmark = pytest.mark.e2e

PHONE = "5511955554444"


def test_json_logs_carry_one_line_per_attempt(tmp_path: Path) -> None:
    with fault_stack(tmp_path, zapi_log_format="json", zapi_instance_alias="shop-br") as stack:
        worker = stack.worker()
        body = unique_body(phone=PHONE)
        stack.sim.script(body["messageId"], Fault(status=503))
        [job] = stack.enqueue([body])
        assert stack.wait_all([job], timeout=30) == {job: "SUCCESS"}
        worker.stop()
        log = worker.log_text()

    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    attempts = [e for e in entries if e.get("job_id") == job and "outcome" in e]
    assert [(e["attempt"], e["status"], e["outcome"]) for e in attempts] == [
        (1, 503, "retry"),
        (2, 200, "delivered"),
    ]
    for entry in attempts:
        assert entry["endpoint"] == "order-status-update"
        assert entry["instance"] == "shop-br"
        assert entry["phone"] == "55119*****444"
        assert entry["duration_ms"] >= 0
    assert PHONE not in log
    assert not any(secret in log for secret in SECRETS)


def test_the_readmes_command_logs_each_attempt(tmp_path: Path) -> None:
    """``celery -A worker worker`` with no --loglevel (Celery's WARNING): attempts still log."""
    with fault_stack(tmp_path) as stack:
        worker = stack.worker(loglevel=None)
        assert "--loglevel" not in worker.args
        body = unique_body(phone=PHONE)
        [job] = stack.enqueue([body])
        assert stack.wait_all([job], timeout=30) == {job: "SUCCESS"}
        worker.stop()
        log = worker.log_text()
    [line] = [line for line in log.splitlines() if f"job_id={job}" in line]
    assert "attempt=1 status=200" in line
    assert "outcome=delivered" in line


@pytest.mark.usefixtures("worker")
def test_text_logs_say_the_same_in_one_line(worker_log: Path, producer: object) -> None:
    """The session worker logs in the readable format."""
    from celery import Celery

    assert isinstance(producer, Celery)
    body = unique_body(phone=PHONE)
    result = producer.send_task("zapi.order_status_update", args=[body])
    result.get(timeout=30)
    lines = [line for line in worker_log.read_text().splitlines() if f"job_id={result.id}" in line]
    assert len(lines) == 1
    assert "endpoint=order-status-update" in lines[0]
    assert "phone=55119*****444 attempt=1 status=200" in lines[0]
    assert "outcome=delivered" in lines[0]
