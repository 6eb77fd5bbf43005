"""Worker and Flower processes started exactly as users start them, for tests, demo and bench.

They run the public commands (``celery -A worker worker``, ``celery -A worker flower``) from the
same virtualenv, configured only through environment variables.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol, Self

import httpx
from celery import Celery

from devtools.lifecycle import Managed
from tasks.contract.redis_url import SentinelOptions


def celery_command() -> list[str]:
    """The ``celery`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "celery"
    return [str(script)] if script.exists() else [sys.executable, "-m", "celery"]


def loopback_command(command: str, port: int) -> list[str]:
    """``zapi-queue <command>`` of this interpreter's environment, serving 127.0.0.1:``port``."""
    script = Path(sys.executable).parent / "zapi-queue"
    return [str(script), command, "--host", "127.0.0.1", "--port", str(port)]


class FakeZapi(Protocol):
    """What a worker needs to know of a fake Z-API (in-process or remote)."""

    @property
    def base_url(self) -> str: ...

    instance_id: str
    instance_token: str
    client_token: str


def stack_env(redis_url: str, zapi: FakeZapi, *, db: int = 0, **settings: str) -> dict[str, str]:
    """The environment of a worker using Redis database ``db`` (results in ``db + 1``) and the
    fake Z-API ``zapi`` with its credentials; ``settings`` adds or overrides variables."""
    env = dict(os.environ)
    env.update(
        CELERY_BROKER_URL=f"{redis_url}/{db}",
        CELERY_RESULT_BACKEND=f"{redis_url}/{db + 1}",
        ZAPI_BASE_URL=zapi.base_url,
        ZAPI_INSTANCE_ID=zapi.instance_id,
        ZAPI_INSTANCE_TOKEN=zapi.instance_token,
        ZAPI_CLIENT_TOKEN=zapi.client_token,
        PYTHONUNBUFFERED="1",
    )
    env.update({name.upper(): value for name, value in settings.items()})
    return env


class _Process(Managed):
    """A child process in its own session, stopped with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _check_alive(self) -> None:
        if not self.running:
            tail = self.log_text()[-3000:]
            raise RuntimeError(f"{self.args[:4]} exited early; its log ends with:\n{tail}")

    #: How long one readiness probe may take (an exporter's scrape pings the workers).
    PROBE_TIMEOUT = 0.5

    def _wait_for(self, url: str, timeout: float) -> None:
        """Until ``url`` answers 200 (the process is ready), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(url, timeout=self.PROBE_TIMEOUT).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.args[:3]} did not answer on {url} in {timeout}s")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a warm shutdown for Celery), then SIGKILL the whole group after timeout."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing gets to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.stop()

    def freeze(self) -> None:
        """SIGSTOP the whole process group: a paused VM, a stalled host. ``thaw()`` resumes it."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, signum)

    def close(self) -> None:
        self.thaw()  # a frozen process would ignore SIGTERM until resumed
        self.stop()


class WorkerProcess(_Process):
    """``celery -A worker worker`` with a unique node name, ready once it answers a ping.

    ``app`` runs another Celery app the same way (the benchmark's baseline); ``loglevel=None``
    leaves Celery's default (WARNING), as the README's ``celery -A worker worker`` does.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        loglevel: str | None = "INFO",
        extra_args: Sequence[str] = (),
        app: str = "worker",
    ) -> None:
        self.nodename = f"zapi-{uuid.uuid4().hex[:8]}@localhost"
        args = [*celery_command(), "-A", app, "worker", "-n", self.nodename]
        args += [*(["--loglevel", loglevel] if loglevel else []), *extra_args]
        super().__init__(args, env, log_path)

    def start(self, timeout: float = 30.0) -> Self:
        self._spawn()
        control = Celery(broker=self.env["CELERY_BROKER_URL"])
        if sentinel := SentinelOptions.from_env(self.env):
            control.conf.broker_transport_options = sentinel.transport_options()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._check_alive()
                if control.control.ping(destination=[self.nodename], timeout=0.5):
                    return self
            raise TimeoutError(f"worker {self.nodename} did not answer a ping in {timeout}s")
        finally:
            control.close()


class _HttpProcess(_Process):
    """A process serving HTTP on loopback ``port``, ready once ``HEALTH_PATH`` answers 200."""

    HEALTH_PATH = "/"

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str], log_path: Path, *, port: int
    ) -> None:
        self.port = port
        super().__init__(args, env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        self._spawn()
        self._wait_for(f"{self.url}{self.HEALTH_PATH}", timeout)
        return self


class FlowerProcess(_HttpProcess):
    """``celery -A worker flower`` on loopback, ready once ``/healthcheck`` answers."""

    HEALTH_PATH = "/healthcheck"

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, port: int, extra_args: Sequence[str] = ()
    ) -> None:
        args = [*celery_command(), "-A", "worker", "flower", "--address=127.0.0.1"]
        args += [f"--port={port}", *extra_args]
        super().__init__(args, env, log_path, port=port)


class WebhookProcess(_HttpProcess):
    """``zapi-queue webhook`` on loopback, ready once ``/healthz`` answers."""

    HEALTH_PATH = "/healthz"

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int) -> None:
        super().__init__(loopback_command("webhook", port), env, log_path, port=port)

    def callback_url(self) -> str:
        """Where Z-API (the fake) posts: the secret path of ZAPI_WEBHOOK_SECRET."""
        return f"{self.url}/webhooks/zapi/{self.env['ZAPI_WEBHOOK_SECRET']}"


class ConsoleProcess(_HttpProcess):
    """``zapi-queue console`` on loopback ``port`` (its login from ``env``: ZAPI_CONSOLE_AUTH),
    ready once ``/healthz`` answers."""

    HEALTH_PATH = "/healthz"

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, port: int, extra_args: Sequence[str] = ()
    ) -> None:
        args = [*loopback_command("console", port), *extra_args]
        super().__init__(args, env, log_path, port=port)


class ExporterProcess(_HttpProcess):
    """``zapi-queue exporter`` on loopback ``port``: the fleet's gauges."""

    HEALTH_PATH = "/metrics"
    PROBE_TIMEOUT = 5.0

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int) -> None:
        super().__init__(loopback_command("exporter", port), env, log_path, port=port)
