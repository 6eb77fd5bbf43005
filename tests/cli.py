"""Running ``zapi-queue`` as an operator does, from the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CLI = str(Path(sys.executable).parent / "zapi-queue")


def run_command(
    args: Sequence[str], env: Mapping[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A command run to its end (a minute at most), its output as text, whatever its exit code:
    the test asserts on that code and output."""
    return subprocess.run(
        args, input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def run_cli(
    env: Mapping[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_command([CLI, *args], env, stdin=stdin)


def health_report(env: dict[str, str], *options: str) -> dict[str, Any]:
    """``zapi-queue health --json`` (workers answering within 1 s)."""
    shown = run_cli(env, "health", "--json", "--timeout", "1", *options)
    return dict(json.loads(shown.stdout))


def invoke_cli(env: dict[str, str], *args: str, stdin: str | bytes | None = None) -> Any:
    """``zapi-queue`` run in this process (click's runner): the settings are read from ``env``
    afresh, as a new process would. Returns click's Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from config import get_settings
    from worker.cli import main

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, list(args), input=stdin, env=env, catch_exceptions=True)
    finally:
        get_settings.cache_clear()
