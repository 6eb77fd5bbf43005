"""mkdocs hook: the pages' generated tables, from the code they describe.

docs/configuration.md holds a marker where the settings table goes (``config.settings.Settings``,
devtools/settings_reference.py), docs/guarantees.md one for every Redis key with its TTL or cap
(``tasks.state.keys``); each build writes the tables there, so the pages cannot drift from the
code and no generated file is committed. A page that lost its marker fails the build.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devtools.settings_reference import MARKER, table
from tasks.state.keys import data_kept_table

KEYS_MARKER = "<!-- redis-keys -->"

#: page -> (its marker, what replaces it).
GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    "configuration.md": (MARKER, table),
    "guarantees.md": (KEYS_MARKER, data_kept_table),
}


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    generated = GENERATED.get(page.file.src_uri)
    if generated is None:
        return markdown
    marker, render = generated
    if marker not in markdown:
        from mkdocs.exceptions import PluginError  # here: tests/test_docs.py runs without mkdocs

        raise PluginError(f"{page.file.src_uri}: the marker {marker} for its table is missing")
    return markdown.replace(marker, render())
