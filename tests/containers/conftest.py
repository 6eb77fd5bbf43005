"""Fixtures of the container tests (`make test-containers`; `make test` does not collect them).

They need Debian's podman, runc and debootstrap (installed by .ci/containers-setup in CI) and
root. Locally without them the tests skip; with CI=true they fail instead. Each phase's time is
printed as it ends and again, with the total, at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers.engine import CACHE, missing_tools
from tests.containers.images import BaseImages, build_app_image, debootstrap_works, stand_ins


class Phases:
    """Wall-clock time of each named phase, printed on the terminal as each one ends."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.done: list[tuple[str, float]] = []
        self.started = time.monotonic()

    def write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            self.done.append((name, took))
            self.write(f"[containers] {name}: {took:.1f} s")


_PHASES: list[Phases] = []


@pytest.fixture(scope="session")
def phases(pytestconfig: pytest.Config) -> Phases:
    recorder = Phases(pytestconfig)
    _PHASES.append(recorder)
    return recorder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for recorder in _PHASES:
        terminalreporter.section("container test phases")
        for name, took in recorder.done:
            terminalreporter.write_line(f"{took:8.1f} s  {name}")
        total = time.monotonic() - recorder.started
        terminalreporter.write_line(f"{total:8.1f} s  total, from the first phase")


def _missing() -> str | None:
    """Why the container tests cannot run here (None: they can)."""
    missing = missing_tools()
    if not missing and not debootstrap_works():
        missing = ["root (debootstrap)"]
    if not missing:
        return None
    return f"container tests need {', '.join(missing)}: bash .ci/containers-setup"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the tools, outside CI: one test skipped with the reason, the rest deselected,
    so the whole folder says it in one line."""
    why = _missing()
    if why is None or os.environ.get("CI") == "true" or not items:
        return
    mine = [item for item in items if Path(item.path).is_relative_to(Path(__file__).parent)]
    if not mine:
        return
    config.hook.pytest_deselected(items=mine[1:])
    items[:] = [item for item in items if item not in mine[1:]]
    mine[0].add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def engine() -> None:
    """Fail when the tools are missing in CI (elsewhere the folder was skipped above)."""
    if (why := _missing()) is not None:
        pytest.fail(why + " (CI must run them)")


@pytest.fixture(scope="session")
def logs() -> Path:
    """This run's logs: every podman command's output, and each container's log."""
    folder = CACHE / "logs" / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def images(engine: None, phases: Phases, logs: Path) -> BaseImages:
    """The stand-in base images, and the application image built from the Dockerfile."""
    with phases("stand-in base images (debootstrap, cached in .cache/containers)"):
        bases = stand_ins(logs / "images.log")
    with phases("podman build of the Dockerfile"):
        build_app_image(bases, logs / "images.log")
    return bases
