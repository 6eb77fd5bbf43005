"""The local servers' context manager: a start that fails half way still closes what it began."""

from __future__ import annotations

from typing import Self

import pytest

from devtools.lifecycle import Managed


class HalfStarted(Managed):
    def __init__(self) -> None:
        self.spawned = False

    def start(self) -> Self:
        self.spawned = True  # e.g. a process is running
        raise TimeoutError("not ready in time")

    def close(self) -> None:
        self.spawned = False


def test_a_failed_start_is_closed() -> None:
    service = HalfStarted()
    with pytest.raises(TimeoutError), service:
        pytest.fail("the block must not run")
    assert service.spawned is False
