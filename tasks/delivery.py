"""What the tasks and the result backend know of one execution by this module's name: the
execution itself lives in :mod:`tasks.execution`.

Celery stores a wait's exception by module and name (``tasks.delivery.RateLimitWait``...), so
the waits stay importable here, and a RETRY stored before tasks/execution/ existed reads the
same.
"""

from __future__ import annotations

from tasks.execution import deliver
from tasks.execution.outcomes import (
    DEFERRAL_REASONS,
    OrderWait,
    RateLimitWait,
    StateUnavailableWait,
    UnknownOrderWait,
)

__all__ = [
    "DEFERRAL_REASONS",
    "OrderWait",
    "RateLimitWait",
    "StateUnavailableWait",
    "UnknownOrderWait",
    "deliver",
]
