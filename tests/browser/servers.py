"""Servers the browser tests point chromium at: processes on a free loopback port, started as
users start them and stopped at the end (devtools.processes does the starting and waiting)."""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.ports import free_port
from devtools.processes import _HttpProcess


class StaticSite(_HttpProcess):
    """``python -m http.server`` over ``root``: a page of the test's own, to check the harness
    (chromium found, launched headless, a page loaded, a form posted) apart from any app."""

    def __init__(self, root: Path, log_path: Path) -> None:
        port = free_port()
        args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        args += ["--directory", str(root)]
        super().__init__(args, {"PYTHONUNBUFFERED": "1"}, log_path, port=port)
