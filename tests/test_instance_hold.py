"""Z-API says an instance's phone is disconnected: its sends are held (its jobs wait without
using attempts) until Z-API says it is connected again; the other instances go on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from devtools.zapi_sim import OtherInstance
from tasks.inbox import Inbox
from tests.bodies import unique_body
from tests.cli import health_report
from tests.faults import fault_stack

pytestmark = pytest.mark.e2e

B_ID, B_TOKEN, B_CLIENT = "inst-b", "itok-B-SECRET-12ab34", "ctok-B-SECRET-56cd78"


def connection(instance_id: str, connected: bool) -> dict[str, object]:
    kind = "ConnectedCallback" if connected else "DisconnectedCallback"
    return {"type": kind, "instanceId": instance_id, "momment": int(time.time() * 1000)}


def test_a_disconnected_instance_holds_its_sends_until_it_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {"instance_id": B_ID, "instance_token": B_TOKEN, "client_token": B_CLIENT}
    with fault_stack(tmp_path, zapi_instances=json.dumps({"shop-b": entry})) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        worker = stack.worker()
        for name, value in stack.env.items():
            monkeypatch.setenv(name, value)
        inbox = Inbox(stack.redis.client(), load_settings())
        assert inbox.take(connection(B_ID, connected=False)).outcome == "stored"

        task = "zapi.order_status_update"
        held = [
            stack.producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-b"})
            for _ in range(5)
        ]
        free = stack.producer.send_task(task, args=[unique_body()])
        assert free.get(timeout=30)["zaapId"]  # the other instance is not held
        time.sleep(3)
        assert not [r for r in stack.sim.requests() if B_ID in r.path]
        assert {result.state for result in held} <= {"PENDING", "RETRY", "STARTED"}

        reconnected = time.monotonic()
        assert inbox.take(connection(B_ID, connected=True)).outcome == "stored"
        for result in held:
            assert result.get(timeout=30)["zaapId"]
        took = time.monotonic() - reconnected
        log = worker.log_text()

    assert took < 15  # held jobs look again every 10 s at most
    for result in held:
        [line] = [line for line in log.splitlines() if f"job_id={result.id}" in line]
        assert "attempt=1 status=200" in line  # no attempt was used while held


def test_polled_status_holds_a_disconnected_instance_without_any_callback(tmp_path: Path) -> None:
    """No webhook at all: the workers poll GET .../status (one of them per interval), hold the
    instance Z-API says is disconnected, and resume it when Z-API says it is connected."""
    entry = {"instance_id": B_ID, "instance_token": B_TOKEN, "client_token": B_CLIENT}
    interval = 1.0
    with fault_stack(
        tmp_path,
        zapi_instances=json.dumps({"shop-b": entry}),
        zapi_status_poll_interval=str(interval),
    ) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        stack.sim.set_connected(False, B_ID)
        workers = [stack.worker(), stack.worker()]

        def health() -> dict[str, Any]:
            return dict(health_report(stack.env, "--min-workers", "0")["instances"])

        task = "zapi.order_status_update"
        held = [
            stack.producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-b"})
            for _ in range(5)
        ]
        free = stack.producer.send_task(task, args=[unique_body()])
        assert free.get(timeout=30)["zaapId"]
        polls_from = time.time()
        time.sleep(4)
        polls_to = time.time()
        assert not [r for r in stack.sim.requests() if B_ID in r.path]
        assert {result.state for result in held} <= {"PENDING", "RETRY", "STARTED"}
        shown_held = health()

        stack.sim.set_connected(True, B_ID)
        reconnected = time.monotonic()
        for result in held:
            assert result.get(timeout=30)["zaapId"]
        took = time.monotonic() - reconnected
        shown_after = health()
        polls = stack.sim.status_polls()
        logs = "".join(worker.log_text() for worker in workers)

    assert took < interval + 12  # the next poll resumes; held jobs look again every 10 s
    b_connection = shown_held["shop-b"]["connection"]
    assert b_connection["connected"] is False
    assert b_connection["error"] == "You are not connected."
    assert shown_held["shop-b"]["held_for"] > 0
    assert shown_held["default"]["connection"]["connected"] is True
    assert shown_after["shop-b"]["connection"]["connected"] is True
    assert shown_after["shop-b"]["held_for"] == 0
    for result in held:
        [line] = [line for line in logs.splitlines() if f"job_id={result.id}" in line]
        assert "attempt=1 status=200" in line  # no attempt was used while held
    # Two workers, one poll of each instance per interval between them (not one each).
    window = [p for p in polls if polls_from <= p.received_at < polls_to and B_ID in p.path]
    assert 2 <= len(window) <= (polls_to - polls_from) / interval + 1, len(window)
    assert "instance shop-b: Z-API says it is disconnected (You are not connected.)" in logs
    assert B_TOKEN not in logs
    assert B_CLIENT not in logs
