"""A private stack per fault test: its own Redis (AOF on, as docker-compose ships it), fake
Z-API and workers, so killing or restarting them cannot disturb the other tests."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from devtools.ports import free_port
from devtools.processes import WebhookProcess, WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.state.deadletter import DeadLetterStore
from tests.conftest import CLIENT_TOKEN, INSTANCE_TOKEN

#: Crash recovery time: short, so that it fits in a test.
WORKER_LEASE = 4
#: Long, as in production: a crashed worker's jobs coming back within the lease prove that the
#: lease brought them back, not the visibility timeout.
VISIBILITY_TIMEOUT = 300


class FaultStack:
    def __init__(self, logs: Path, **settings: str) -> None:
        self.logs = logs
        self.redis = RedisServer(appendonly=True)
        self.sim = ZapiSimulator(
            instance_id="fault-instance", instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
        )
        self.settings = {
            "zapi_rate_limit": "1000",
            "zapi_rate_burst": "100",
            "zapi_retry_backoff": "0.1",
            "zapi_retry_backoff_max": "2",
            "zapi_timeout": "3",
            "zapi_connect_timeout": "1",
            "celery_visibility_timeout": str(VISIBILITY_TIMEOUT),
            "celery_worker_lease": str(WORKER_LEASE),
            "worker_concurrency": "8",
            **settings,
        }
        self.workers: list[WorkerProcess] = []
        self.finished_at: dict[str, float] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> FaultStack:
        self._stack.enter_context(self.redis)
        self._stack.enter_context(self.sim)
        self.env = stack_env(self.redis.url, self.sim)
        self.env.update({name.upper(): value for name, value in self.settings.items()})
        self.producer = Celery(
            broker=self.env["CELERY_BROKER_URL"], backend=self.env["CELERY_RESULT_BACKEND"]
        )
        self._stack.callback(self.producer.close)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def worker(self, loglevel: str | None = "INFO", **settings: str) -> WorkerProcess:
        """Start one more worker; it is stopped when the stack closes."""
        env = {**self.env, **{k.upper(): v for k, v in settings.items()}}
        log = self.logs / f"worker-{len(self.workers) + 1}.log"
        process = WorkerProcess(env, log, loglevel=loglevel)
        self.workers.append(self._stack.enter_context(process))
        return process

    def enqueue(self, bodies: list[dict[str, Any]], *, until_requests: int = 0) -> list[str]:
        """Enqueue status updates of ``bodies``; return their job ids once the fake Z-API has
        seen ``until_requests`` requests in all (at once when 0)."""
        jobs = [self.producer.send_task("zapi.order_status_update", args=[b]).id for b in bodies]
        if until_requests:
            self.wait_for_requests(until_requests)
        return jobs

    def wait_all(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Poll each job's state until all are final; survives a Redis restart meanwhile.

        ``self.finished_at`` keeps when each job was first seen final (monotonic clock).
        """
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for job_id in job_ids:
                if states.get(job_id) in ("SUCCESS", "FAILURE"):
                    continue
                with contextlib.suppress(Exception):
                    states[job_id] = self.producer.AsyncResult(job_id).state
                    if states[job_id] in ("SUCCESS", "FAILURE"):
                        self.finished_at.setdefault(job_id, time.monotonic())
            if all(states.get(j) in ("SUCCESS", "FAILURE") for j in job_ids):
                break
            time.sleep(0.2)
        return states

    def delivered_per_message(self) -> Counter[str]:
        """How many times Z-API accepted each messageId."""
        return Counter(r.message_id or "" for r in self.sim.requests() if r.status == 200)

    def wait_for_requests(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sim.requests()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.sim.requests()) >= count, "the fake Z-API saw too few requests"

    def ledger(self, jobs: list[str], bodies: list[dict[str, Any]]) -> Ledger:
        """Where every job ended, what Z-API received, and how the workers fared."""
        ledger = Ledger(requests=len(self.sim.requests()))
        state_redis = self.redis.client()
        letters = DeadLetterStore(state_redis)
        for job, body in zip(jobs, bodies, strict=True):
            result = self.producer.AsyncResult(job)
            state, outcome = result.state, result.result
            letter = letters.get(job)
            if state == "SUCCESS" and isinstance(outcome, dict):
                ledger.delivered.append(job)
                if outcome.get("ambiguousAttempts"):
                    ledger.ambiguous.add(body["messageId"])
            elif state == "FAILURE" and letter is not None:
                ledger.dead.append(job)
                if letter.ambiguous_attempts:
                    ledger.ambiguous.add(body["messageId"])
            elif state == "FAILURE":
                ledger.vanished.append(job)
            else:
                ledger.unfinished.append(f"{job} ({state})")
        state_redis.close()
        time.sleep(2)  # a worker that is about to fail on the last acks: let it
        ledger.duplicates = {m: n for m, n in self.delivered_per_message().items() if n > 1}
        for worker in self.workers:
            log = worker.log_text()
            if not worker.running or "Unrecoverable error" in log:
                ledger.exits.append(f"{worker.nodename}: {log[-2000:]}")
            if ledger.unfinished:  # what the workers last said, for a job that never ended
                ledger.log_tails.append(f"--- {worker.nodename}:\n{log[-4000:]}")
        return ledger


class WebhookStack(FaultStack):
    """A fault stack with the webhook receiver, which the fake Z-API posts its callbacks to;
    with ``state_db``, the state Redis is that database of the stack's Redis."""

    def __init__(
        self, logs: Path, *, webhook_secret: str, state_db: int | None = None, **settings: str
    ) -> None:
        super().__init__(logs, **settings)
        self.webhook_secret = webhook_secret
        self.state_db = state_db

    def __enter__(self) -> WebhookStack:
        super().__enter__()
        if self.state_db is not None:
            self.env["ZAPI_STATE_REDIS_URL"] = f"{self.redis.url}/{self.state_db}"
        self.env["ZAPI_WEBHOOK_SECRET"] = self.webhook_secret
        webhook = WebhookProcess(self.env, self.logs / "webhook.log", port=free_port())
        self.webhook = self._stack.enter_context(webhook)
        self.sim.webhook_url = webhook.callback_url()
        return self


@dataclass
class Ledger:
    """Every job in exactly one place, and what it cost: the fault tests' account."""

    requests: int
    delivered: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    #: messageId -> how many times Z-API accepted it, where more than once.
    duplicates: dict[str, int] = field(default_factory=dict)
    #: messageIds whose job reported sends that may have reached Z-API unanswered.
    ambiguous: set[str] = field(default_factory=set)
    exits: list[str] = field(default_factory=list)
    log_tails: list[str] = field(default_factory=list)

    def assert_nothing_lost(self) -> None:
        """No job vanished or stayed unfinished, no duplicate went unreported, no worker left."""
        assert self.vanished == [], f"FAILURE without a dead letter: {self.vanished}"
        assert self.unfinished == [], (
            f"neither delivered nor dead: {self.unfinished}\n" + "\n".join(self.log_tails)
        )
        unreported = set(self.duplicates) - self.ambiguous
        assert not unreported, f"sent twice, not reported ambiguous: {unreported}"
        assert self.exits == [], "a worker exited:\n" + "\n".join(self.exits)


@contextlib.contextmanager
def fault_stack(logs: Path, **settings: str) -> Iterator[FaultStack]:
    with FaultStack(logs, **settings) as stack:
        yield stack
