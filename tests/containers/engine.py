"""The container engine the container tests drive: Debian's podman and podman-compose (PyPI).

Every command goes through :func:`podman` / :class:`Compose` so that all of them see the same
``containers.conf`` (this folder's, unless CONTAINERS_CONF is set): runc and cgroupfs, which
work on the cgroup v1 hosts CI runs on, where crun and systemd do not. Their output goes to a
log file, not to the test's output: the test prints phases and timings, the log has the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Outside git (.gitignore): the stand-in base images' root file system, the logs.
CACHE = ROOT / ".cache" / "containers"
#: The label podman-compose gives every container, volume and network of a project.
PROJECT_LABEL = "io.podman.compose.project"


def engine_env() -> dict[str, str]:
    """The environment of every podman and podman-compose command."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    return env


def missing_tools() -> list[str]:
    """What `make test-containers` needs that is not installed (.ci/containers-setup)."""
    wanted = ["podman", "runc", "debootstrap"]
    missing = [tool for tool in wanted if shutil.which(tool) is None]
    beside = shutil.which("podman-compose", path=str(Path(sys.executable).parent))
    if beside is None and shutil.which("podman-compose") is None:
        missing.append("podman-compose")
    return missing


def compose_command() -> list[str]:
    """podman-compose from this virtualenv (the dev extra), else from PATH."""
    beside = Path(sys.executable).parent / "podman-compose"
    return [str(beside)] if beside.exists() else ["podman-compose"]


class CommandError(AssertionError):
    """A podman command exited non-zero: its command line and the tail of its output."""


def run(
    args: Sequence[str],
    log: Path,
    *,
    check: bool = True,
    timeout: float = 600,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one command, appending its output to ``log``; raise CommandError if asked."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(
        list(args),
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or engine_env(),
        check=False,
    )
    with log.open("a") as out:
        out.write(
            f"$ {' '.join(args)}  ({time.monotonic() - started:.1f} s, rc {done.returncode})\n"
        )
        out.write(done.stdout)
        out.write(done.stderr)
    if check and done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        raise CommandError(f"{' '.join(args[:4])} ... exited {done.returncode}:\n{tail}")
    return done


def podman(*args: str, log: Path, check: bool = True, timeout: float = 600) -> str:
    """``podman ARGS``' standard output."""
    return run(["podman", *args], log, check=check, timeout=timeout).stdout


def remove_project(project: str, log: Path) -> None:
    """Every container, pod, volume and network of a compose project, gone (even half-made)."""
    label = f"label={PROJECT_LABEL}={project}"
    listings = {
        "container": ["ps", "-aq"],
        "pod": ["pod", "ls", "-q"],
        "volume": ["volume", "ls", "-q"],
        "network": ["network", "ls", "-q"],
    }
    for kind, listing in listings.items():
        ids = sorted(set(podman(*listing, "--filter", label, log=log, check=False).split()))
        if not ids:
            continue
        if kind == "container":
            podman("rm", "-f", "-t", "0", "--depend", *ids, log=log, check=False)
        else:
            podman(kind, "rm", "-f", *ids, log=log, check=False)
    # podman-compose's pod (pod_PROJECT, made by `up`, left by `down` when empty) has no label.
    if podman_ok("pod", "exists", pod_name(project), log=log):
        podman("pod", "rm", "-f", pod_name(project), log=log, check=False)


def pod_name(project: str) -> str:
    return f"pod_{project}"


def podman_ok(*args: str, log: Path) -> bool:
    return run(["podman", *args], log, check=False).returncode == 0


def leftovers(project: str, log: Path) -> list[str]:
    """Names of what :func:`remove_project` should have removed and did not."""
    label = f"label={PROJECT_LABEL}={project}"
    found = podman("ps", "-a", "--filter", label, "--format", "{{.Names}}", log=log, check=False)
    for kind in ("pod", "volume", "network"):
        found += podman(kind, "ls", "-q", "--filter", label, log=log, check=False)
    if podman_ok("pod", "exists", pod_name(project), log=log):
        found += " " + pod_name(project)
    return found.split()
