"""docs/local.md's recipe ("Run it locally, without Docker"), run line by line in bash: Redis
with its append-only file, the fake Z-API, a worker, the webhook receiver and Flower started by
hand; a full update enqueued with the CLI gets the fake's reply, a sample order webhook fills the
order book, and a two-field update of that order is delivered; Flower answers with its login
only.

Only the ports change (free ones instead of 6379, 8080, 8000 and 5555), the install line is
replaced by the test environment's PATH, and the script waits for each background server to
listen before the next line, as a person typing would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from devtools.ports import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "local.md"
WAIT_FOR_PORT = (
    "for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; "
    "sleep 0.1; done"
)
#: The recipe's ports, in the order its servers start: Redis, fake Z-API, webhook, Flower.
PORTS = ("6379", "8080", "8000", "5555")


def stop_group(pid: int) -> None:
    """Stop the servers and the worker the script left running: SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


def recipe() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert block is not None
    return block.group(1).replace("\\\n", " ").splitlines()


@pytest.mark.timeout(240)
def test_the_local_recipe_delivers_a_job(tmp_path: Path) -> None:
    lines = recipe()
    assert lines[0].startswith("make install")
    assert "--appendonly yes" in lines[1]
    ports = {name: str(free_port()) for name in PORTS}
    redis_port, flower_port = int(ports["6379"]), int(ports["5555"])
    script = ["set -euo pipefail", f"export PATH={Path(sys.executable).parent}:$PATH"]
    for line in lines[1:]:
        for fixed, free in ports.items():
            line = line.replace(fixed, free)
        script.append(line)
        code = line.split("#")[0].rstrip()
        for port in ports.values():
            if code.endswith("&") and re.search(rf"--port[ =]{port}\b", code):
                script.append(WAIT_FOR_PORT.format(port=port))
    # Files, not pipes: the servers left in the background would hold a pipe open.
    out_file, err_file = tmp_path / "out", tmp_path / "err"
    with out_file.open("w") as out_handle, err_file.open("w") as err_handle:
        process = subprocess.Popen(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out_handle,
            stderr=err_handle,
            start_new_session=True,
        )
        try:
            process.wait(timeout=180)
            flower = f"http://127.0.0.1:{flower_port}/api/workers"
            anonymous = httpx.get(flower, timeout=10).status_code
            logged_in = httpx.get(flower, auth=("admin", "local-only"), timeout=10).status_code
            with redis.Redis(port=redis_port) as client:
                appendonly = client.config_get("appendonly")
        finally:
            stop_group(process.pid)
    out, err = out_file.read_text(), err_file.read_text()
    assert process.returncode == 0, err[-3000:]
    # Nothing outlives the recipe: its Redis (in a session of its own) is gone too.
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", redis_port), timeout=2),
    ):
        pass
    lines_out = out.splitlines()
    job_lines = [line for line in lines_out if re.fullmatch(r"[0-9a-f-]{36}", line)]
    replies = [json.loads(line) for line in lines_out if line.startswith('{"zaapId"')]
    assert len(job_lines) == 2, out  # the full update and the two-field one
    assert len(replies) == 2, out
    assert all(set(reply) == {"zaapId", "messageId", "id"} for reply in replies)
    # The sample order webhook was taken into the order book, and its phone never shown whole.
    [posted] = [json.loads(line) for line in lines_out if line.startswith('{"status"')]
    assert posted["status"] == 200, posted
    assert posted["messageId"] == "LOCAL-ORDER-1"
    assert posted["orderRequestId"] in out.split('{"status"')[1].split("\n", 1)[1]
    assert "5511999990000" not in out + err
    assert "local-webhook-secret" not in out
    # Flower asks for its login, and lets the documented one in.
    assert (anonymous, logged_in) == (401, 200)
    # Redis logged its writes to the append-only file in the recipe's folder.
    assert appendonly == {"appendonly": "yes"}
    data = tmp_path / ".demo" / "redis"
    assert [p for p in data.rglob("*") if ".aof" in p.name], list(data.rglob("*"))
