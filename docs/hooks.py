"""mkdocs hook: the configuration page's table, generated from ``config.settings.Settings``.

docs/configuration.md holds a marker where the table goes; each build writes the table there
(worker/dev/settings_reference.py), so the page cannot drift from the code and no generated file
is committed. A page that lost its marker fails the build.
"""

from __future__ import annotations

from typing import Any

from worker.dev.settings_reference import MARKER, table

PAGE = "configuration.md"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError  # here: tests/test_docs.py runs without mkdocs

        raise PluginError(f"{PAGE}: the marker {MARKER} for the settings table is missing")
    return markdown.replace(MARKER, table())
