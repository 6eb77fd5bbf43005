"""The peer test suites, fetched once from PyPI's source distributions into ``.peers/``.

Versions come from the installed distributions, so the suites always match the pins in
``.ci/constraints.txt``. Only the test files (and the ini file holding the peer's pytest
settings) are extracted: an extracted ``kombu/`` package would shadow the installed one.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

#: The git-ignored cache of sdists and extracted suites, in the repository root.
PEERS_DIR = Path(__file__).resolve().parents[2] / ".peers"
#: Written in an extracted tree once every member is in place: the list of members.
COMPLETE = ".complete"


def sdist(project: str, release: str) -> Path:
    """The cached sdist of ``project==release``, downloaded with pip when missing."""
    cached = PEERS_DIR / f"{project}-{release}.tar.gz"
    if not cached.exists():
        PEERS_DIR.mkdir(exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        pip += ["--no-binary", ":all:", "--dest", str(PEERS_DIR), f"{project}=={release}"]
        subprocess.run(pip, check=True, timeout=300)
    if not cached.exists():
        raise FileNotFoundError(f"pip download did not produce {cached.name}")
    return cached


def peer_tree(project: str, members: tuple[str, ...]) -> Path:
    """A directory holding ``members`` (paths relative to the sdist's top directory) of the
    installed version's sdist; extracted once, then reused while the member list is the same."""
    release = version(project)
    top = f"{project}-{release}"
    tree = PEERS_DIR / top
    listing = "\n".join(members)
    with contextlib.suppress(FileNotFoundError):
        if (tree / COMPLETE).read_text() == listing:
            return tree
    archive = sdist(project, release)
    with tempfile.TemporaryDirectory(dir=PEERS_DIR) as scratch, tarfile.open(archive) as tar:
        wanted = [tar.getmember(f"{top}/{member}") for member in members]
        tar.extractall(scratch, members=wanted, filter="data")
        (Path(scratch) / top / COMPLETE).write_text(listing)
        shutil.rmtree(tree, ignore_errors=True)  # incomplete (an interrupted run) or outdated
        (Path(scratch) / top).rename(tree)
    return tree
