"""What the key registry (tasks/state/keys.py) says of each key: its pattern, the personal data
it holds, how long it is kept, and what bounds it besides a TTL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

#: The personal data of a key that holds none.
NONE = "none"
#: What a queued job's body holds.
BODY = "the whole body: phone, order, message text"


@dataclass(frozen=True, slots=True)
class Cap:
    """What bounds a key besides (or instead of) a TTL: at most ``most`` entries (None: no fixed
    number; the scan test checks a number), kept by ``kept_by``."""

    kept_by: str
    most: int | None = None


@dataclass(frozen=True)
class Key:
    """One key (or family: ``{placeholders}`` in ``pattern``), the personal data it holds, how
    long it is kept and the setting behind that; ``cap`` for a key with no TTL (``expires``
    False) or a bounded size. ``redis``: state, broker, results or every; ``owner``: who writes
    it (zapi-queue, kombu, celery)."""

    pattern: str
    data: str
    personal: str
    kept: str
    setting: str = "-"
    cap: Cap | None = None
    expires: bool = True
    redis: str = "state"
    owner: str = "zapi-queue"

    @cached_property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"\{\w+\}", self.pattern)
        return re.compile("^" + ".+".join(re.escape(part) for part in parts) + "$", re.DOTALL)

    def matches(self, key: str) -> bool:
        return self.regex.match(key) is not None
