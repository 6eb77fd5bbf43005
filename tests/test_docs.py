"""The documentation: the configuration page lists every setting, the site builds strictly, and
the README's front page stays short with links that lead somewhere.

The configuration page's table is generated from ``config.settings.Settings`` by docs/hooks.py
at each build; here it is generated the same way, from docs/configuration.md, and read back row
by row. The strict build needs mkdocs (the ``docs`` extra, ``make docs`` installs it): locally
it skips without it, in CI (``CI=true``) it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from config.settings import Settings
from devtools import settings_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def shown_page(name: str) -> str:
    """docs/NAME as the site shows it: the hook's table in place of its marker."""
    hooks = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert hooks is not None
    assert hooks.loader is not None
    module = importlib.util.module_from_spec(hooks)
    hooks.loader.exec_module(module)

    class Page:
        class file:  # noqa: N801 - mkdocs' attribute name
            src_uri = name

    page: str = module.on_page_markdown((DOCS / name).read_text(), page=Page)
    return page


def configuration_page() -> str:
    return shown_page("configuration.md")


def test_the_guarantees_page_shows_every_registered_redis_key() -> None:
    from tasks.state.keys import data_kept_table

    shown = shown_page("guarantees.md")
    assert "<!-- redis-keys -->" not in shown
    assert data_kept_table() in shown


def shown_default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_every_setting_is_on_the_configuration_page_with_its_default() -> None:
    page = configuration_page()
    assert settings_reference.MARKER not in page
    rows = {
        match.group(1): line
        for line in page.splitlines()
        if (match := re.match(r"\| `([A-Z0-9_]+)`", line))
    }
    for name, field in Settings.model_fields.items():
        env = name.upper()
        assert env in rows, f"{env} is missing from the configuration page"
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", rows[env])[1:-1]]
        assert len(cells) == 5, rows[env]
        assert cells[2].startswith(shown_default(field)), (env, cells[2])
        assert cells[4], f"{env} has no description: add a docstring under the field"


def test_the_reference_reads_types_constraints_and_secret_files() -> None:
    rows = {row.env: row for row in settings_reference.rows()}
    assert rows["WORKER_CONCURRENCY"].constraint == ">= 1, <= 1\u2009000"
    assert rows["ZAPI_METRICS_PORT"].type == "integer (optional)"
    assert rows["ZAPI_METRICS_PORT"].constraint == ">= 1, <= 65\u2009535"
    assert rows["ZAPI_LOG_FORMAT"].type == "one of `text`, `json`"
    assert rows["ZAPI_ORDER_TTL"].default == "`7776000` (90 days)"
    assert rows["ZAPI_INSTANCE_TOKEN"].from_file
    assert not rows["ZAPI_RATE_LIMIT"].from_file
    assert "(or `CELERY_BROKER_URL_FILE`)" in settings_reference.table()


def test_the_reference_names_a_field_without_description() -> None:
    class Partial(Settings):
        zapi_undocumented: int = 3

    [row] = [row for row in settings_reference.rows(Partial) if row.env == "ZAPI_UNDOCUMENTED"]
    assert (row.default, row.description) == ("`3`", "")


def test_the_readme_front_page_is_short_and_its_links_lead_somewhere() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local, "the README links into the docs"
    for link in local:
        assert (ROOT / link).exists(), f"README.md links to {link}, which does not exist"


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mkdocs-material is not installed (CI must build the docs: make docs)")
        pytest.skip("mkdocs-material not installed: make docs installs it")
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    built = (tmp_path / "configuration" / "index.html").read_text()
    for name in Settings.model_fields:
        assert f"<code>{name.upper()}</code>" in built
    assert (tmp_path / "local" / "index.html").exists()


def test_the_readme_producer_example_imports_in_the_dev_venv() -> None:
    """`make install` installs the producer package too, so the README's example runs there."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    [imports] = [
        line
        for block in blocks
        for line in block.splitlines()
        if line.startswith("from zapi_queue_producer import")
    ]
    namespace: dict[str, Any] = {}
    exec(imports, namespace)  # noqa: S102 - the README's own line
    assert namespace["Producer"].__module__ == "zapi_queue_producer.producer"
