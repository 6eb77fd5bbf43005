"""The rooms of docs/architecture.md, as the imports have them: ``config/`` imports nothing
above it, and ``tasks/contract/`` (shipped alone as the producer wheel) nothing of ours outside
its folder. Read from the source (every import statement, those inside functions and
``TYPE_CHECKING`` blocks included), so a new module cannot slip past."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Our top-level packages (pyproject.toml ships the first three; devtools stays outside).
OURS = ("worker", "tasks", "config", "devtools")


def imported(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``source``; relative ones stay in their
    package and are left out."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def crossings(room: str, allowed: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """``path:line module`` for each import, in the folder ``room``, of one of our packages
    outside ``allowed``."""
    found = []
    for path in sorted((root / room).rglob("*.py")):
        for line, module in imported(path.read_text(encoding="utf-8")):
            if module.split(".")[0] in OURS and not module.startswith(allowed):
                found.append(f"{path.relative_to(root).as_posix()}:{line} {module}")
    return found


def test_config_imports_nothing_above_it() -> None:
    assert crossings("config", allowed=("config",)) == []


def test_the_producer_contract_imports_nothing_of_ours_outside_its_folder() -> None:
    assert crossings("tasks/contract", allowed=()) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from tasks.contract.redis_url import SCHEMES", ["tasks.contract.redis_url"]),
        ("import worker.celery_app as app", ["worker.celery_app"]),
        ("def f():\n    from devtools import demo", ["devtools"]),
        ("if TYPE_CHECKING:\n    import tasks", ["tasks"]),
        ("from config.instances import Instance", ["config.instances"]),
        ("from .redis_url import SentinelOptions", []),
        ("import redis, pydantic", ["redis", "pydantic"]),
    ],
)
def test_every_kind_of_import_is_seen(source: str, found: list[str]) -> None:
    assert [module for _, module in imported(source)] == found


def test_a_crossing_is_named_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "fine.py").write_text("import json\nfrom config import x\n")
    (tmp_path / "config" / "bad.py").write_text('"""Doc."""\n\nfrom tasks.state import keys\n')
    found = crossings("config", allowed=("config",), root=tmp_path)
    assert found == ["config/bad.py:3 tasks.state"]
