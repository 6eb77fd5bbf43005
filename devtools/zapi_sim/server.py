"""The fake Z-API's HTTP plumbing: a threading server on loopback and its request handler.

The handler reads a request, hands it to the simulator (control routes apart), and acts out
the answer: a JSON reply, or a Fault's delay or dropped connection.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from devtools.zapi_sim.records import ReceivedRequest
from devtools.zapi_sim.switches import Fault

if TYPE_CHECKING:
    from devtools.zapi_sim.simulator import ZapiSimulator


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], simulator: ZapiSimulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator


class _Handler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"
    #: TCP_NODELAY, as Z-API's servers answer: the headers and the body are two writes, and
    #: with Nagle on, a keep-alive client would wait for its delayed ACK (~40 ms) on each answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the record of requests is the log, and paths carry the token."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        simulator = self.server.simulator
        if self.path.startswith("/__sim__/"):
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            status, payload = simulator.control(self.command, self.path, parsed)
            self._send(status, payload, {})
            return
        request = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            received_at=time.time(),
        )
        outcome = simulator.receive(request)
        if isinstance(outcome, Fault):
            if outcome.delay:
                time.sleep(outcome.delay)
            if outcome.drop:
                request.status = -1
                self.close_connection = True
                self.connection.close()
                return
            outcome = (outcome.status, outcome.body, outcome.headers)
        status, payload, headers = outcome
        request.status = status
        self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 - stdlib's names
