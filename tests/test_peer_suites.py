"""Kombu's and Celery's own Redis tests, run against our transport: what passes with kombu's
transport must pass with ours.

Each peer suite (tests/peers/) runs twice in child pytest processes, at the same time, each on
its own fresh Redis: once with kombu's stock transport (the control: it shows the suite works
here, and which of its tests pass on this machine) and once with ``worker.transport:Transport``
behind ``redis://``. The server's command statistics prove which transport did the fetching:
only ours sends ``BLMOVE``, and kombu's sends none.

Peer tests run as published; the only selection is of files (below), and the runs use no
reruns (kombu marks its tests ``flaky``; a transport must pass them the first time).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.redis_server import RedisServer
from tests.peers.plugin import TRANSPORTS
from tests.peers.sources import peer_tree

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
#: Whole child run, as a backstop; each peer test is also bounded by pytest-timeout.
RUN_TIMEOUT = 600
PEER_TEST_TIMEOUT = 120


@dataclass(frozen=True)
class PeerSuite:
    """Files of a peer's sdist to extract, and the child pytest's arguments."""

    project: str
    ini: str  # the peer's own pytest settings (kombu's test classes are named test_*)
    members: tuple[str, ...]
    args: tuple[str, ...]


KOMBU = PeerSuite(
    project="kombu",
    ini="setup.cfg",
    members=(
        "setup.cfg",
        "t/__init__.py",
        "t/integration/__init__.py",
        "t/integration/common.py",
        "t/integration/test_redis.py",
        "t/integration/test_redis_brpop_qos.py",
    ),
    # Not run: the t/integration tests of other brokers (test_py_amqp, test_mongodb, test_sqs,
    # test_kafka, test_pgmq), which need those services; every Redis test file runs.
    args=("t/integration/test_redis.py", "t/integration/test_redis_brpop_qos.py"),
)

CELERY = PeerSuite(
    project="celery",
    ini="pyproject.toml",
    members=(
        "pyproject.toml",
        "t/__init__.py",
        "t/integration/__init__.py",
        "t/integration/conftest.py",
        "t/integration/tasks.py",
        "t/integration/test_connection_recovery.py",
    ),
    # celery.contrib.pytest: the fixtures (celery_session_app...) its conftest relies on, which
    # Celery's CI gets from the pytest-celery plugin.
    args=("-p", "celery.contrib.pytest", "t/integration/test_connection_recovery.py"),
)


@dataclass
class Run:
    """One child run of a suite: its exit code, output, per-test outcomes, Redis commands."""

    transport: str
    returncode: int
    log: Path
    seconds: float  # the child session's own duration
    resolved: str  # the class redis:// resolved to in the child
    outcomes: dict[str, dict[str, str]]
    commands: dict[str, int]  # Redis command -> calls

    def with_outcome(self, outcome: str) -> set[str]:
        return {test for test, entry in self.outcomes.items() if entry["outcome"] == outcome}

    def summary(self) -> str:
        counts = {o: len(self.with_outcome(o)) for o in ("passed", "failed", "skipped")}
        return (
            f"{self.transport} transport: {len(self.outcomes)} tests, {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped in {self.seconds:.0f}s"
        )

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class ChildRun:
    """A peer suite's child pytest on its own Redis; ``with`` guarantees both are stopped."""

    def __init__(self, suite: PeerSuite, tree: Path, transport: str, scratch: Path) -> None:
        self.suite = suite
        self.tree = tree
        self.transport = transport
        self.report = scratch / f"{suite.project}-{transport}.json"
        self.log = scratch / f"{suite.project}-{transport}.log"
        self.redis = RedisServer()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ChildRun:
        self.redis.start()
        port = str(self.redis.port)
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PYTEST_", "CELERY_", "REDIS_", "TEST_"))
        }
        env.update(
            PYTHONPATH=str(REPO),  # for -p tests.peers.plugin
            ZAPI_PEER_TRANSPORT=self.transport,
            ZAPI_PEER_REPORT=str(self.report),
            # Where the peer suites look for their broker.
            REDIS_HOST="127.0.0.1",
            REDIS_6379_TCP=port,  # kombu
            REDIS_PORT=port,  # celery's t/integration/tasks.py
            TEST_BROKER=f"redis://127.0.0.1:{port}/0",
            TEST_BACKEND=f"redis://127.0.0.1:{port}/1",
        )
        command = [sys.executable, "-m", "pytest", "-p", "tests.peers.plugin"]
        command += ["-c", self.suite.ini, "--rootdir", ".", "-p", "no:cacheprovider"]
        command += ["-rfEs", f"--timeout={PEER_TEST_TIMEOUT}", *self.suite.args]
        try:
            with self.log.open("wb") as log:
                self.process = subprocess.Popen(
                    command, cwd=self.tree, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        except BaseException:
            self.redis.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.redis.close()

    def wait(self) -> Run:
        assert self.process is not None
        try:
            returncode = self.process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait()
        client = self.redis.client()
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        report: dict[str, Any] = {"transport": "?", "seconds": 0, "tests": {}}
        if self.report.exists():
            report = json.loads(self.report.read_text())
        return Run(
            transport=self.transport,
            returncode=returncode,
            log=self.log,
            seconds=report["seconds"],
            resolved=report["transport"],
            outcomes=report["tests"],
            commands={name.removeprefix("cmdstat_"): int(e["calls"]) for name, e in stats.items()},
        )


def run_both(suite: PeerSuite, scratch: Path) -> dict[str, Run]:
    """The suite with each transport, concurrently: most of its time is spent sleeping."""
    tree = peer_tree(suite.project, suite.members)
    with contextlib.ExitStack() as stack:
        children = [
            stack.enter_context(ChildRun(suite, tree, transport, scratch))
            for transport in TRANSPORTS
        ]
        return {child.transport: child.wait() for child in children}


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("suite", [KOMBU, CELERY], ids=lambda suite: suite.project)
def test_peer_suite_passes_with_our_transport(suite: PeerSuite, tmp_path: Path) -> None:
    runs = run_both(suite, tmp_path)
    ours, stock = runs["ours"], runs["kombu"]
    print(f"\n{suite.project}, {stock.summary()}\n{suite.project}, {ours.summary()}")

    # The harness itself: both runs collected and ran the suite, on the intended transports.
    for run in (stock, ours):
        failure = f"{suite.project} suite did not run ({run.transport}, exit {run.returncode})"
        assert run.returncode in (0, 1), f"{failure}:\n{run.tail()}"  # 2+: usage, collection
        assert run.outcomes, f"{failure}:\n{run.tail()}"
    assert stock.resolved == "kombu.transport.redis:Transport"
    assert ours.resolved == "worker.transport:Transport"
    assert stock.commands.get("blmove", 0) == 0, "kombu's transport never sends BLMOVE"
    assert ours.commands.get("blmove", 0) > 0, "our transport did not fetch: not exercised"
    if stock.returncode:
        # Not ours to fix, but worth a look: the comparison below is then over fewer tests.
        warnings.warn(
            f"{suite.project}: {sorted(stock.with_outcome('failed'))} fail with kombu's own "
            f"transport too (log: {stock.log})",
            stacklevel=1,
        )

    regressions = sorted(stock.with_outcome("passed") - ours.with_outcome("passed"))
    details = "".join(
        f"\n--- {test}\n{ours.outcomes.get(test, {}).get('detail', 'not run')[-2000:]}"
        for test in regressions
    )
    assert not regressions, (
        f"{len(regressions)} {suite.project} test(s) pass with kombu's transport, not with ours "
        f"({ours.summary()}; log: {ours.log}):{details}"
    )
