"""Browser tests (``make test-browser``): Playwright drives Debian's chromium, headless.

Playwright's own browser builds are never used: they are downloaded at install time, which CI
cannot do. The system chromium (``/usr/bin/chromium``, or the one ``ZAPI_TEST_CHROMIUM`` names)
is launched by path instead; .ci/run installs Debian's ``chromium`` when CI=true. Without one,
every test here skips with the same one line, except in CI, where that is a failure.

pytest-playwright gives the ``page``, ``context`` and ``browser`` fixtures (a new context, so
new cookies and credentials, per test); this file only says which chromium, and how.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

#: Where Debian's package puts it; a name on PATH is looked for as well.
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
#: One size for every page, so screenshots in docs/ are alike (a laptop screen).
VIEWPORT = {"width": 1280, "height": 800}


def find_chromium() -> Path | None:
    """``ZAPI_TEST_CHROMIUM``, else Debian's chromium, else ``chromium`` on PATH."""
    named = os.environ.get("ZAPI_TEST_CHROMIUM")
    if named:
        return Path(named)
    if DEBIAN_CHROMIUM.exists():
        return DEBIAN_CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def missing_chromium() -> str | None:
    """Why no chromium can be driven here (None: one can)."""
    found = find_chromium()
    if found is not None and os.access(found, os.X_OK):
        return None
    why = f"no chromium at {found}" if found else "chromium is not installed"
    return f"{why}: apt-get install chromium, or ZAPI_TEST_CHROMIUM=/path/to/chromium"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip without a chromium (fail in CI), from here rather than from a fixture: a skip
    raised here has this line as its place, so ``-ra`` folds every test's into one line."""
    missing = missing_chromium()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (.ci/run installs it in CI)", pytrace=False)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The chromium to drive (the tests skipped before asking when there is none)."""
    found = find_chromium()
    assert found is not None
    return found


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_type_launch_args: dict[str, Any], chromium: Path
) -> dict[str, Any]:
    """pytest-playwright's launch options with the system chromium. Its sandbox needs user
    namespaces that root in a container does not get: as root (CI) it runs without one."""
    return {
        **browser_type_launch_args,
        "executable_path": str(chromium),
        "chromium_sandbox": os.geteuid() != 0,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """Every context the same size, in one locale and time zone (pages show times in UTC)."""
    return {**browser_context_args, "viewport": VIEWPORT, "locale": "en-US", "timezone_id": "UTC"}
