"""The browser harness itself, on a page of its own: a failure here is the harness', not a
page's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.servers import StaticSite

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>harness</title></head>
<body><h1>Instances</h1>
<form method="get" action="/found.html"><input name="q" aria-label="search">
<button>Find</button></form></body></html>
"""
FOUND = '<!doctype html><html lang="en"><head><title>found</title></head><body>ok</body></html>'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE)
    (root / "found.html").write_text(FOUND)
    with StaticSite(root, root.parent / "site.log") as server:
        yield server


def test_chromium_loads_a_page_and_submits_its_form(page: Page, site: StaticSite) -> None:
    page.goto(site.url)
    expect(page).to_have_title("harness")
    expect(page.get_by_role("heading")).to_have_text("Instances")
    page.get_by_label("search").fill("order-1")
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(f"{site.url}/found.html?q=order-1")
    expect(page.locator("body")).to_have_text("ok")


def test_the_viewport_is_the_one_screenshots_use(
    page: Page, site: StaticSite, tmp_path: Path
) -> None:
    page.goto(site.url)
    shot = tmp_path / "page.png"
    page.screenshot(path=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.viewport_size == {"width": 1280, "height": 800}
