"""The fake Z-API in a process of its own, driven through its ``/__sim__/`` control routes.

Timing tests and benchmarks use it so that the server answering (and time-stamping) requests
does not share a GIL with the test or benchmark that drives the load.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Unpack

import httpx

from devtools.lifecycle import Managed
from devtools.ports import free_port
from devtools.zapi_sim import Fault, ReceivedRequest, SimulatorConfig, SimulatorOptions
from devtools.zapi_sim.outbox import Fired


class RemoteSimulator(SimulatorConfig, Managed):
    """Same credentials and control surface as ZapiSimulator, in a subprocess."""

    def __init__(self, **options: Unpack[SimulatorOptions]) -> None:
        SimulatorConfig.__init__(self, **options)
        self.port = free_port()
        module = (sys.executable, "-m", "devtools.zapi_sim")
        self._args = [*module, "--port", str(self.port), *self.cli_args()]
        self._process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=30)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RemoteSimulator:
        self._process = subprocess.Popen(self._args, stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        self._process.stdout.readline()  # "fake Z-API listening on ..." once it listens
        return self

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
        self._http.close()

    def requests(self, message_id: str | None = None) -> list[ReceivedRequest]:
        received = [
            ReceivedRequest(
                method=r["method"],
                path=r["path"],
                headers=r["headers"],
                body=r["body"].encode(),
                received_at=r["received_at"],
                status=r["status"],
            )
            for r in self._http.get("/__sim__/requests").json()
        ]
        if message_id is None:
            return received
        return [r for r in received if r.message_id == message_id]

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._http.get("/__sim__/stats").json()
        return stats

    def reset(self) -> None:
        self._http.post("/__sim__/reset")

    def script(self, message_id: str, *faults: Fault) -> None:
        faults_json = [vars(f) for f in faults]
        self._http.post("/__sim__/script", json={"messageId": message_id, "faults": faults_json})

    def set_connected(self, connected: bool, instance_id: str | None = None) -> None:
        """As ZapiSimulator.set_connected (Z-API's default disconnection error)."""
        body = {"connected": connected, "instance_id": instance_id}
        self._http.post("/__sim__/connection", json=body).raise_for_status()

    def queued(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        """The instance's queue (default: the main one's) as ``POST .../queue`` shows it."""
        params = {"instance_id": instance_id} if instance_id else {}
        queued: list[dict[str, Any]] = self._http.get("/__sim__/queue", params=params).json()
        return queued

    def fired(self, instance_id: str | None = None) -> list[Fired]:
        """As ZapiSimulator.fired: what reached the phone, in firing order."""
        params = {"instance_id": instance_id} if instance_id else {}
        return [Fired.from_dict(f) for f in self._http.get("/__sim__/fired", params=params).json()]
