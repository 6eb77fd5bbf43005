"""One lazily built resource per process, rebuilt after a fork.

Worker threads share one HTTP client and one Redis client (both thread-safe and pooled); a
forked child must not reuse its parent's sockets, so it builds its own on first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from config.instances import Instance

T = TypeVar("T")


class PerProcess(Generic[T]):
    """Holds the value ``factory()`` builds on first ``get()`` in each process."""

    def __init__(self, factory: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._value: T | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    def close(self) -> None:
        with self._lock:
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            self._close(value)

    def _forget(self) -> None:
        self._value = None
        self._lock = threading.Lock()


class PerInstance(Generic[T]):
    """One ``factory(instance)`` per Z-API instance and process: clients, limiters and stores
    that hold an instance's credentials or key prefix. Rebuilt after a fork, like PerProcess."""

    def __init__(
        self, factory: Callable[[Instance], T], close: Callable[[T], None] | None = None
    ) -> None:
        self._factory = factory
        self._close = close
        self._values: dict[str, T] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self, instance: Instance) -> T:
        value = self._values.get(instance.alias)
        if value is None:
            with self._lock:
                value = self._values.get(instance.alias)
                if value is None:
                    value = self._values[instance.alias] = self._factory(instance)
        return value

    def close(self) -> None:
        with self._lock:
            values, self._values = list(self._values.values()), {}
        if self._close is not None:
            for value in values:
                self._close(value)

    def _forget(self) -> None:
        self._values = {}
        self._lock = threading.Lock()
