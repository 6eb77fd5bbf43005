"""README's "Run it locally, without Docker" recipe, run line by line in bash: Redis, the fake
Z-API and a worker started by hand, and a job enqueued with the CLI gets the fake's reply.

Only the ports change (free ones instead of 6379 and 8080), the install line is replaced by the
test environment's PATH, and the script waits for each background server to listen before the
next line, as a person typing would."""

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

import pytest

from worker.dev.ports import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
WAIT_FOR_PORT = (
    "for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; "
    "sleep 0.1; done"
)


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
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Run it locally, without Docker") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return block.group(1).replace("\\\n", " ").splitlines()


def test_the_local_recipe_delivers_a_job(tmp_path: Path) -> None:
    lines = recipe()
    assert lines[0].startswith("make install")
    redis_port, sim_port = free_port(), free_port()
    script = ["set -euo pipefail", f"export PATH={Path(sys.executable).parent}:$PATH"]
    for line in lines[1:]:
        line = line.replace("6379", str(redis_port)).replace("8080", str(sim_port))
        script.append(line)
        for port in (redis_port, sim_port):
            if line.rstrip().split("#")[0].rstrip().endswith("&") and f"--port {port}" in line:
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
            process.wait(timeout=90)
        finally:
            stop_group(process.pid)
    out, err = out_file.read_text(), err_file.read_text()
    # Nothing outlives the recipe: its Redis (in a session of its own) is gone too.
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", redis_port), timeout=2),
    ):
        pass
    assert process.returncode == 0, err[-3000:]
    lines_out = out.splitlines()
    job_lines = [line for line in lines_out if re.fullmatch(r"[0-9a-f-]{36}", line)]
    replies = [json.loads(line) for line in lines_out if line.startswith('{"zaapId"')]
    assert len(job_lines) == 1, out
    assert len(replies) == 1, out
    assert set(replies[0]) == {"zaapId", "messageId", "id"}
