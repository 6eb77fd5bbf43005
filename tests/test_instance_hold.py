"""Z-API says an instance's phone is disconnected: its sends are held (its jobs wait without
using attempts) until Z-API says it is connected again; the other instances go on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from config.settings import load_settings
from tasks.inbox import Inbox
from tests.bodies import unique_body
from tests.faults import fault_stack
from worker.dev.zapi_sim import OtherInstance

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
