"""One compose project brought up with podman-compose as a user would, and taken down whole.

The project runs from a scratch copy of the files a user's checkout has (docker-compose.yml,
deploy/, .env.example), so that a test's `.env` never touches the developer's. The only file
added is a docker-compose.override.yml (read by podman-compose, as by docker compose, without
being named) that publishes Redis on a free loopback port: the tests enqueue from outside the
containers. podman applies no restart policy without systemd, so a test restarts what it kills.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devtools.ports import free_port
from tests.containers.engine import (
    PROJECT_LABEL,
    ROOT,
    CommandError,
    compose_command,
    engine_env,
    leftovers,
    podman,
    remove_project,
    run,
)

#: The ports docker-compose.yml publishes on loopback (Flower, webhook, fake Z-API).
FIXED_PORTS = {"flower": 5555, "webhook": 8000, "console": 8090, "zapi-sim": 8080}
SERVICE_LABEL = "io.podman.compose.service"


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Stack:
    """``podman-compose [--env-file ENV_FILE] up -d --scale worker=N`` in a scratch project."""

    name: str
    workdir: Path
    log: Path
    env_file: str | None = None
    dotenv: str | None = None
    profiles: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    workers: int = 3
    #: The Redis services published on a free loopback port each (``published``).
    publish: tuple[str, ...] = ("redis",)
    published: dict[str, int] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return f"zqct-{self.name}"

    def _prepare(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        for name in ("docker-compose.yml", ".env.example"):
            shutil.copy2(ROOT / name, self.workdir / name)
        shutil.copytree(ROOT / "deploy", self.workdir / "deploy")
        if self.dotenv is not None:
            (self.workdir / ".env").write_text(self.dotenv)
        lines = ["services:"]
        for service in self.publish:
            self.published[service] = free_port()
            lines += [
                f"  {service}:",
                "    ports:",
                f'      - "127.0.0.1:{self.published[service]}:6379"',
            ]
        (self.workdir / "docker-compose.override.yml").write_text("\n".join(lines) + "\n")

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        command = [*compose_command(), "-p", self.project]
        if self.env_file is not None:
            command += ["--env-file", self.env_file]
        for profile in self.profiles:
            command += ["--profile", profile]
        env = {**engine_env(), **self.environment}
        done = run(
            [*command, *args], self.log, check=check, timeout=timeout, cwd=self.workdir, env=env
        )
        return done.stdout + done.stderr

    def up(self) -> None:
        busy = [f"{s} ({p})" for s, p in FIXED_PORTS.items() if port_in_use(p)]
        if busy:
            raise AssertionError(f"loopback ports docker-compose.yml publishes are taken: {busy}")
        remove_project(self.project, self.log)  # a previous run killed before its cleanup
        self._prepare()
        self.compose("up", "-d", "--scale", f"worker={self.workers}")

    def down(self) -> list[str]:
        """Take the project down; what is left of it afterwards (empty: all gone)."""
        with contextlib.suppress(CommandError, OSError):
            self.save_logs()
        with contextlib.suppress(CommandError, OSError):
            self.compose("down", "-v", "-t", "0", check=False, timeout=300)
        remove_project(self.project, self.log)
        return leftovers(self.project, self.log)

    def containers(self, service: str | None = None) -> list[str]:
        """Container names of the project (of one service), running or not, sorted."""
        filters = ["--filter", f"label={PROJECT_LABEL}={self.project}"]
        if service is not None:
            filters += ["--filter", f"label={SERVICE_LABEL}={service}"]
        names = podman("ps", "-a", *filters, "--format", "{{.Names}}", log=self.log)
        return sorted(names.split())

    def service_of(self, container: str) -> str:
        label = '{{index .Config.Labels "' + SERVICE_LABEL + '"}}'
        return podman("inspect", "--format", label, container, log=self.log).strip()

    def has_healthcheck(self, container: str) -> bool:
        found = podman("inspect", "--format", "{{.Config.Healthcheck}}", container, log=self.log)
        return found.strip() not in ("", "<nil>")

    def healthcheck(self, container: str) -> tuple[bool, str]:
        """The container's own healthcheck command, run now (podman runs none by itself
        without systemd); its output when it fails."""
        done = run(["podman", "healthcheck", "run", container], self.log, check=False)
        if done.returncode == 0:
            return True, ""
        inspect = "{{json .State.Health.Log}}"
        detail = podman("inspect", "--format", inspect, container, log=self.log, check=False)
        return False, (done.stdout + done.stderr).strip() + " " + detail.strip()[-600:]

    def wait_healthy(self, timeout: float = 180) -> dict[str, float]:
        """Seconds after this call at which each container with a healthcheck first passed;
        AssertionError naming the ones that never did, with their last output."""
        started = time.monotonic()
        pending = {c for c in self.containers() if self.has_healthcheck(c)}
        passed: dict[str, float] = {}
        failures: dict[str, str] = {}
        while pending and time.monotonic() - started < timeout:
            for container in sorted(pending):
                ok, output = self.healthcheck(container)
                if ok:
                    passed[container] = time.monotonic() - started
                    pending.discard(container)
                else:
                    failures[container] = output
            if pending:
                time.sleep(2)
        if pending:
            details = "\n".join(f"  {c}: {failures.get(c, '')}" for c in sorted(pending))
            raise AssertionError(f"unhealthy after {timeout:.0f} s:\n{details}")
        return passed

    def running(self, container: str) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", container, log=self.log)
        return state.strip() == "true"

    def kill(self, container: str) -> None:
        podman("kill", "--signal", "KILL", container, log=self.log)

    def start(self, container: str) -> None:
        podman("start", container, log=self.log)

    def exec(self, container: str, *command: str, check: bool = True) -> str:
        return podman("exec", container, *command, log=self.log, check=check)

    def save_logs(self) -> None:
        """Each container's log beside the commands' log, for a failure's post-mortem."""
        for container in self.containers():
            done = run(["podman", "logs", container], self.log.with_name("unused.log"), check=False)
            self.log.with_name(f"{container}.log").write_text(done.stdout + done.stderr)


class FakeZapi:
    """The fake Z-API container's control routes (devtools/zapi_sim/), on loopback."""

    def __init__(self, port: int = FIXED_PORTS["zapi-sim"]) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.http.get("/__sim__/requests").json()
        return found

    def accepted_per_message(self) -> dict[str, int]:
        """How many times Z-API accepted each messageId."""
        counts: dict[str, int] = {}
        for request in self.requests():
            if request["status"] == 200 and "/status" not in request["path"]:
                message_id = _message_id(request["body"])
                if message_id is not None:
                    counts[message_id] = counts.get(message_id, 0) + 1
        return counts

    def post_order(self, **options: Any) -> dict[str, Any]:
        answer = self.http.post("/__sim__/order", json=options)
        answer.raise_for_status()
        order: dict[str, Any] = answer.json()
        return order

    def configure(self, **settings: Any) -> None:
        self.http.post("/__sim__/config", json=settings).raise_for_status()

    def close(self) -> None:
        self.http.close()


def _message_id(body: str) -> str | None:
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("messageId"), str):
            return str(parsed["messageId"])
    return None


def wait_until(check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """``check()``'s first truthy answer within ``timeout`` seconds, else its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every)
