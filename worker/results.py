"""The result backend: Celery's Redis backend, with a final state that a late write cannot undo.

Celery stores a job's RETRY state *after* it publishes the retry message. A fast worker may run
that retry and store SUCCESS first; the late RETRY then overwrites it, and the producer sees a
delivered job in RETRY for ever (seen in the ordering tests under load: a retry 14 ms after a
500, the first worker 300 ms late with its RETRY write). Celery's own guard reads the state and
then writes, which leaves that window open, and does not cover FAILURE.

Here every state is written by one Lua script that reads the state it replaces: a SUCCESS stays
(Celery's rule), and a FAILURE stays unless a final state replaces it; atomically, in Redis, and
in one round trip where Celery takes two (its read, then its write). Installed for the
``redis://``, ``rediss://``, ``redis+socket://`` and ``sentinel://`` schemes by
:func:`install`, so ``CELERY_RESULT_BACKEND`` keeps its plain URL.
"""

from __future__ import annotations

import math
from typing import Any

from celery import Celery, states
from celery.backends.redis import RedisBackend, SentinelBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

from tasks.request import is_stored_wait
from tasks.state.scripts import Script
from worker.redis_errors import error_code

#: Schemes whose backend this module replaces, and the class that replaces it.
BACKENDS = {
    "redis": "worker.results:GuardedRedisBackend",
    "rediss": "worker.results:GuardedRedisBackend",
    "redis+socket": "worker.results:GuardedRedisBackend",
    "sentinel": "worker.results:GuardedSentinelBackend",
}

#: Every state's write (results.lua): a settled state stays.
_SET_UNLESS_SETTLED = Script.of(
    "worker",
    "results.lua",
    "set_unless_settled",
    keys=("meta",),
    args=("encoded_meta", "expires"),
)


#: Refusals a Redis recovers from by itself: full under ``noeviction``, a replica before its
#: promotion, loading its data, a script running too long, a failover under way.
TRANSIENT_REFUSALS = frozenset({"OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"})


class FinalStateGuard(RedisBackend):
    """A settled state is never replaced by a later one (mixed into Celery's Redis backends).

    A result write refused for a passing reason is retried (``result_backend_always_retry``,
    with Celery's backoff and limit) like one cut by a lost connection: Celery retries only
    those, and a job whose result write met a full Redis was acked with no result, PENDING for
    ever to its producer (seen in the out-of-memory fault test)."""

    def exception_safe_to_retry(self, exc: Exception) -> bool:
        return bool(super().exception_safe_to_retry(exc)) or error_code(exc) in TRANSIENT_REFUSALS

    def _store_result(
        self,
        task_id: Any,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Celery's, without its read of the current state: the write's script reads it. A
        wait's RETRY is stored without a traceback: it is no failure (tasks/request.py)."""
        if state == states.RETRY and is_stored_wait(result):
            traceback = None
        meta = self._get_result_meta(  # type: ignore[attr-defined]  # not in celery-types
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        try:
            key = self.get_key_for_task(task_id)
            self._set_with_state(key, self.encode(meta), state)  # type: ignore[attr-defined]
        except BackendStoreError as ex:
            raise BackendStoreError(str(ex), state=state, task_id=task_id) from ex  # type: ignore[call-arg]
        return result

    def _set(self, key: Any, value: Any, expires: Any = None) -> None:
        """Celery's write (under its ``set``: size check, expiry, retries), as one script."""
        script = getattr(self, "_unless_settled", None)
        if script is None:
            script = self._unless_settled = _SET_UNLESS_SETTLED.register(self.client)
        if expires is None:
            expires = getattr(self, "expires", None)  # Celery's Redis backend sets it
        script(meta=key, encoded_meta=value, expires=math.ceil(expires) if expires else 0)


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
