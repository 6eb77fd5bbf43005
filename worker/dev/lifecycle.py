"""The one context-manager protocol of the local servers: ``with X(...) as x`` starts and closes."""

from __future__ import annotations

from typing import Self


class Managed:
    """Entering starts the service (and returns it), leaving closes it, whatever happened."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
