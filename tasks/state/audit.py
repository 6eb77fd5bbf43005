"""The console's audit log: who did what to dead letters, when, and to how many.

``zapi-queue:console:audit`` is a list, newest entry first, one JSON record per action (a
replay or a purge, one letter or thousands). Each write pushes, trims to ``AUDIT_MAX`` entries
and renews the key's TTL (``AUDIT_TTL``) in one MULTI, so the log is capped and expires when
nobody has acted for that long. Entries hold operators' names and what they chose (filters, with
phone-like digit runs masked by the writer), never a body.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import redis

from tasks.state.keys import AUDIT_MAX, AUDIT_TTL, CONSOLE_AUDIT_KEY


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action: ``done`` letters replayed or purged, ``refused`` kept (sends of unknown
    outcome, not forced), ``missing`` gone before their turn (replayed by someone else,
    expired); ``outcome`` is ``done`` or what stopped it."""

    at: float
    user: str
    action: str
    what: str
    done: int = 0
    refused: int = 0
    missing: int = 0
    forced: bool = False
    outcome: str = "done"

    @classmethod
    def from_json(cls, data: str | bytes) -> AuditEntry:
        record = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in record.items() if name in known})


class AuditLog:
    """The capped, expiring audit log in the state Redis."""

    def __init__(self, client: redis.Redis, *, most: int = AUDIT_MAX, ttl: int = AUDIT_TTL):
        self._redis = client
        self.most = most
        self.ttl = ttl

    def record(self, entry: AuditEntry) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(CONSOLE_AUDIT_KEY, json.dumps(asdict(entry), ensure_ascii=False))
        pipe.ltrim(CONSOLE_AUDIT_KEY, 0, self.most - 1)
        pipe.expire(CONSOLE_AUDIT_KEY, self.ttl)
        pipe.execute()

    def recent(self, count: int = 100) -> list[AuditEntry]:
        """The newest ``count`` entries, newest first (an unreadable one is skipped)."""
        entries = []
        for raw in self._redis.lrange(CONSOLE_AUDIT_KEY, 0, max(count, 1) - 1):
            try:
                entries.append(AuditEntry.from_json(raw))
            except (ValueError, TypeError):
                continue
        return entries
