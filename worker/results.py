"""The result backend: Celery's Redis backend, with a final state that a late write cannot undo.

Celery stores a job's RETRY state *after* it publishes the retry message. A fast worker may run
that retry and store SUCCESS first; the late RETRY then overwrites it, and the producer sees a
delivered job in RETRY for ever (seen in the ordering tests under load: a retry 14 ms after a
500, the first worker 300 ms late with its RETRY write). Celery's own guard reads the state and
then writes, which leaves that window open, and does not cover FAILURE.

Here a state that is not final (PENDING, STARTED, RETRY, ...) is written by one Lua script that
leaves a SUCCESS or FAILURE in place: atomically, in Redis. Final states are written as Celery
writes them. Installed for the ``redis://``, ``rediss://``, ``redis+socket://`` and
``sentinel://`` schemes by :func:`install`, so ``CELERY_RESULT_BACKEND`` keeps its plain URL.
"""

from __future__ import annotations

import math
from typing import Any

from celery import Celery, states
from celery.backends.redis import RedisBackend, SentinelBackend

#: Schemes whose backend this module replaces, and the class that replaces it.
BACKENDS = {
    "redis": "worker.results:GuardedRedisBackend",
    "rediss": "worker.results:GuardedRedisBackend",
    "redis+socket": "worker.results:GuardedRedisBackend",
    "sentinel": "worker.results:GuardedSentinelBackend",
}

# KEYS[1]: the task's meta key. ARGV: the encoded meta, expiry seconds (0: none).
_SET_UNLESS_FINAL = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and (meta.status == 'SUCCESS' or meta.status == 'FAILURE') then
    return 0
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class FinalStateGuard(RedisBackend):
    """A non-final state never replaces a final one (mixed into Celery's Redis backends)."""

    def _set_with_state(self, key: Any, value: Any, state: str) -> Any:
        if state in states.READY_STATES:
            return super()._set_with_state(key, value, state)  # type: ignore[misc]
        return self.ensure(self._set_unless_final, (key, value))

    def _set_unless_final(self, key: Any, value: Any) -> None:
        script = getattr(self, "_unless_final", None)
        if script is None:
            script = self._unless_final = self.client.register_script(_SET_UNLESS_FINAL)
        ttl = getattr(self, "expires", None)  # set by Celery's Redis backend, not in its stubs
        expires = math.ceil(ttl) if ttl else 0
        script(keys=[key], args=[value, expires])


class GuardedRedisBackend(FinalStateGuard):
    """Celery's Redis result backend, guarded."""


class GuardedSentinelBackend(FinalStateGuard, SentinelBackend):
    """Celery's Sentinel result backend (it follows a failover), guarded."""


def install(app: Celery) -> None:
    """Make ``app`` use the guarded backend for Redis result URLs."""
    app.loader.override_backends = {
        **getattr(app.loader, "override_backends", {}),
        **BACKENDS,
    }
