"""The worker's wheel is the product alone: no fake Z-API, demo or test cluster in it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_wheel_holds_the_product_and_no_development_tool(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("zapi_queue-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name and ".dist-info" not in name}
    assert tops == {"worker", "tasks", "config"}, tops
    assert "worker/transport.py" in names
    assert "tasks/state/turns.lua" in names  # the scripts travel with their stores
    assert "worker/console/templates/base.html" in names  # and the console's pages
    assert "worker/console/static/console.css" in names
    doubles = [n for n in names if "zapi_sim" in n or "devtools" in n or n.startswith("tests/")]
    assert doubles == []
