"""Replays and purges of dead letters, run in the background of the console's process.

An action (one letter or every letter matching a filter) goes to one thread that runs actions
one after another, so two bulk replays never race over the same letters and the pages stay
quick. Its :class:`Action` carries the progress a page shows (refreshing itself until it is
over) and, once over, is written to the audit log (tasks/state/audit.py): who, when, what, how
many. The rule on sends of unknown outcome is tasks/dead_letters.py's, as for the CLI.

The thread is a daemon: a console stopped mid-action stops it between two letters' sends, and
that action is not in the audit log (the letters it replayed are gone from the store, as with a
CLI replay interrupted). The newest ``KEPT`` actions are remembered for their pages.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import redis

from tasks.contract.redaction import redact
from tasks.dead_letters import Filters, Send, refusal, replay
from tasks.state.audit import AuditEntry, AuditLog
from tasks.state.deadletter import DeadLetter, DeadLetterStore

logger = logging.getLogger("zapi_queue.console")

#: Actions remembered for their pages (the audit log keeps them all, capped).
KEPT = 50
#: Refused letters named on an action's page, for the form that forces them.
REFUSED_SHOWN = 500


@dataclass(frozen=True, slots=True)
class Selection:
    """The letters an action is for: these job ids, or every letter ``filters`` match."""

    job_ids: tuple[str, ...] = ()
    filters: Filters | None = None

    def letters(self, store: DeadLetterStore, started: float) -> Iterator[DeadLetter | str]:
        """Each letter, or the id of one that is gone, read as consumed (removing each one
        handled is safe: the store's pages resume past it). Filters see only letters that
        failed before ``started``: a replay that fails again at once is not replayed again."""
        if self.filters is not None:
            until = min(self.filters.until or started, started)
            yield from replace(self.filters, until=until).apply(store)
            return
        for job_id in self.job_ids:
            letter = store.get(job_id)
            yield letter if letter is not None else job_id


@dataclass
class Action:
    """One replay or purge and how far it got."""

    id: str
    user: str
    kind: str
    what: str
    selection: Selection
    forced: bool = False
    expected: int | None = None
    state: str = "waiting"
    done: int = 0
    refused: int = 0
    missing: int = 0
    refused_ids: list[str] = field(default_factory=list)
    error: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def over(self) -> bool:
        return self.state in ("done", "failed")

    @property
    def handled(self) -> int:
        return self.done + self.refused + self.missing

    def audit_entry(self) -> AuditEntry:
        outcome = "done" if self.state == "done" else f"failed: {self.error}"
        return AuditEntry(
            at=self.created,
            user=self.user,
            action=self.kind,
            what=self.what,
            done=self.done,
            refused=self.refused,
            missing=self.missing,
            forced=self.forced,
            outcome=outcome,
        )


class Actions:
    """The console's background actions: started from a request, run by one daemon thread."""

    def __init__(
        self,
        store: DeadLetterStore,
        send: Send,
        audit: AuditLog,
        *,
        secrets: list[str] | None = None,
    ) -> None:
        self.store = store
        self.send = send
        self.audit = audit
        self.secrets = secrets or []
        self._actions: OrderedDict[str, Action] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Action] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(
        self,
        user: str,
        kind: str,
        selection: Selection,
        what: str,
        *,
        forced: bool = False,
        expected: int | None = None,
    ) -> Action:
        """Queue an action (``replay`` or ``purge``); its page follows it by id."""
        if kind not in ("replay", "purge"):
            raise ValueError(f"unknown action {kind!r}")
        action = Action(uuid.uuid4().hex, user, kind, what, selection, forced, expected)
        with self._lock:
            self._actions[action.id] = action
            while len(self._actions) > KEPT:
                self._actions.popitem(last=False)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run_forever, name="console-actions", daemon=True
                )
                self._thread.start()
        self._queue.put(action)
        return action

    def get(self, action_id: str) -> Action | None:
        with self._lock:
            return self._actions.get(action_id)

    def recent(self) -> list[Action]:
        with self._lock:
            return list(reversed(self._actions.values()))

    def wait(self, action: Action, timeout: float = 30.0) -> Action:
        """Until ``action`` is over (tests, and nothing else, wait on it)."""
        deadline = time.monotonic() + timeout
        while not action.over and time.monotonic() < deadline:
            time.sleep(0.02)
        return action

    def _run_forever(self) -> None:
        while True:
            self._run(self._queue.get())

    def _run(self, action: Action) -> None:
        action.state = "running"
        try:
            for item in action.selection.letters(self.store, action.created):
                self._handle(action, item)
            action.state = "done"
        except Exception as exc:  # noqa: BLE001 - any error ends the action, said on its page
            action.error = redact(f"{type(exc).__name__}: {exc}", self.secrets)[:300]
            action.state = "failed"
            logger.warning("console %s %s failed: %s", action.kind, action.id, action.error)
        finally:
            action.finished = time.time()
            try:
                self.audit.record(action.audit_entry())
            except redis.RedisError as exc:
                logger.warning("console: audit entry of %s not written: %s", action.id, exc)

    def _handle(self, action: Action, item: DeadLetter | str) -> None:
        if isinstance(item, str):
            action.missing += 1
        elif action.kind == "purge":
            if self.store.remove([item.job_id]):
                action.done += 1
            else:
                action.missing += 1
        elif replay(item, self.store, self.send, force=action.forced) is None:
            action.refused += 1
            if len(action.refused_ids) < REFUSED_SHOWN:
                action.refused_ids.append(item.job_id)
        else:
            action.done += 1


def counts(store: DeadLetterStore, filters: Filters) -> tuple[int, int]:
    """How many letters ``filters`` match now, and how many of them the rule would refuse (the
    preview of a bulk action: one read of the matching letters)."""
    matching = ambiguous = 0
    for letter in filters.apply(store):
        matching += 1
        ambiguous += refusal(letter) is not None
    return matching, ambiguous


def letters_of(store: DeadLetterStore, job_ids: tuple[str, ...]) -> list[DeadLetter]:
    """The letters of these ids that still exist (a preview of a chosen set)."""
    found = [store.get(job_id) for job_id in job_ids]
    return [letter for letter in found if letter is not None]
