"""Browser tests (``make test-browser``): Playwright drives Debian's chromium, headless.

Playwright's own browser builds are never used: they are downloaded at install time, which CI
cannot do. The system chromium (``/usr/bin/chromium``, or the one ``ZAPI_TEST_CHROMIUM`` names)
is launched by path instead; .ci/run installs Debian's ``chromium`` when CI=true. Without one,
every test here skips with the same one line, except in CI, where that is a failure.

pytest-playwright gives the ``page``, ``context`` and ``browser`` fixtures (a new context, so
new cookies and credentials, per test); this file says which chromium, and how, and gives the
console's pages what their tests share: ``console`` (the real process, on the seeded fleet's
settings), ``console_dbs`` (its Redis databases, to write a page's story into), ``logged_in``
(a page with the login) and ``screenshot`` (a page into docs/images for ``make screenshots``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from devtools.ports import free_port
from devtools.processes import ConsoleProcess
from devtools.redis_server import RedisServer
from tests.browser.console_env import (
    BROKER_DB,
    LOGIN,
    RESULTS_DB,
    STATE_DB,
    ConsoleDbs,
    console_env,
)
from tests.conftest import empty_db

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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip without a chromium (fail in CI), from here rather than from a fixture: a skip
    raised here has this line as its place, so ``-ra`` folds every test's into one line; and
    before any fixture starts a server."""
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


# -- the console (worker/console/), for every page's browser tests --------------------------


@pytest.fixture(scope="module")
def console_dbs(redis_server: RedisServer) -> Iterator[ConsoleDbs]:
    """The console's Redis databases of the session's server (broker, state, results), emptied
    before and after the module: a page's test writes its story into ``state`` or ``broker``."""
    with (
        empty_db(redis_server, BROKER_DB) as broker,
        empty_db(redis_server, STATE_DB) as state,
        empty_db(redis_server, RESULTS_DB) as results,
    ):
        yield ConsoleDbs(redis_server.url, broker=broker, state=state, results=results)


@pytest.fixture(scope="module")
def console(
    console_dbs: ConsoleDbs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    """``zapi-queue console`` as users start it, on a free loopback port, for the seeded
    fleet's settings (tests/console_fleet.py) and the login :data:`LOGIN`."""
    env = console_env(console_dbs)
    log = tmp_path_factory.mktemp("console") / "console.log"
    with ConsoleProcess(env, log, port=free_port()) as server:
        yield server


@pytest.fixture
def logged_in(new_context: Callable[..., BrowserContext]) -> Page:
    """A page whose browser gives the console's login (HTTP basic auth) when asked."""
    user, password = LOGIN
    context = new_context(http_credentials={"username": user, "password": password})
    return context.new_page()


@pytest.fixture
def screenshot(page_shots: Path) -> Callable[[Page, str], Path]:
    """``screenshot(page, "console-instances")``: the whole page as a PNG, into docs/images
    when ``ZAPI_TEST_SCREENSHOTS`` names that folder (``make screenshots``), else a temporary
    one (taken all the same: a page that cannot be drawn fails)."""

    def take(page: Page, name: str) -> Path:
        path = page_shots / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture(scope="session")
def page_shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("ZAPI_TEST_SCREENSHOTS")
    folder = Path(named) if named else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
