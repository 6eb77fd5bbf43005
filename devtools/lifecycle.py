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
        # A start that fails half way (a server spawned, then not ready in time) is closed too:
        # the with-block's exit will not run, and the process would outlive the test.
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()
