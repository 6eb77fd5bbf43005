"""`make demo` runs the pipeline, prints every outcome, exits 0 and leaves nothing running
behind but its logs, in the folder it names."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.e2e


def test_demo_prints_results_and_cleans_up() -> None:
    env = {**os.environ, "ZAPI_INSTANCE_TOKEN": "real-looking-token"}
    completed = subprocess.run(
        [sys.executable, "-m", "devtools.demo"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, completed.stderr
    assert "ignoring ZAPI_INSTANCE_TOKEN" in out
    assert "real-looking-token" not in out + completed.stderr
    # three samples, the loop's short update, the order message and its two updates by key
    assert out.count("SUCCESS  zaapId=") == 7
    assert "FAILURE  StaleUpdateError: order 4N8FCTW22W4: orderStatus processing is behind" in out
    assert "FAILURE  InvalidBodyError: invalid order-status-update body (3 problems)" in out
    assert "received 4 requests" in out

    # The loop: an order webhook in, two fields out as the full body, the read receipt back.
    assert "stored in the order book" in out
    assert '"orderStatus": "shipped", "paymentStatus": "pending"' in out
    assert "delivery read" in out

    # By the shop's own number: the order message, then shipped and paid by its key, in full.
    assert "the order message: SUCCESS" in out
    assert "custom item custom-item-" in out
    assert "shipped by orderKey: job" in out
    assert "paid by orderKey: job" in out
    assert '"orderStatus": "shipped", "paymentStatus": "paid"' in out
    assert out.count("delivery read") == 2
    assert "5511987650000" not in out  # the phone is masked

    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)]
    assert len(set(ports)) == 4  # Redis, fake Z-API, webhook, Flower
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    [node] = re.findall(r"node (zapi-\w+@localhost)", out)
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if node in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []

    # The logs stay, in the folder the demo names (under the checkout's gitignored .demo/).
    [logs] = re.findall(r"^logs +(\S+)  \(kept after the demo\)$", out, re.MULTILINE)
    assert f"their logs are kept in {logs}" in out
    folder = Path(logs)
    try:
        assert folder.parent == Path(__file__).resolve().parent.parent / ".demo" / "logs"
        assert {path.name for path in folder.iterdir()} == {
            "worker.log",
            "webhook.log",
            "flower.log",
        }
        assert "attempt=1" in (folder / "worker.log").read_text()
        assert "real-looking-token" not in "".join(p.read_text() for p in folder.iterdir())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_demo_keeps_flower_up_until_ctrl_c_then_stops_everything() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", "--keep-running"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    output = ""
    for line in process.stdout:
        output += line
        if "press Ctrl-C" in line:
            break
    [flower_url] = re.findall(r"Flower is at (http://127\.0\.0\.1:\d+)", output)
    assert httpx.get(f"{flower_url}/healthcheck", timeout=5).status_code == 200
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)

    assert process.returncode == 0
    assert "stopping worker, webhook, Flower, fake Z-API and Redis" in rest
    [node] = re.findall(r"node (zapi-\w+@localhost)", output)
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if node in " ".join(p.info["cmdline"] or [])
    ]
    port = int(flower_url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    [logs] = re.findall(r"^logs +(\S+)  \(kept after the demo\)$", output, re.MULTILINE)
    assert (Path(logs) / "flower.log").exists()
    shutil.rmtree(logs, ignore_errors=True)
