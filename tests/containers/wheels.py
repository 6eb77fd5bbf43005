"""The wheels the application image installs from, made on the host before the build.

The image is built with no network at all. A build that reaches PyPI from inside podman's network
namespace depends on the host's resolver and proxy being reachable from there, which CI's machines
do not promise (seen in CI: "Temporary failure in name resolution" fetching setuptools). So the
host's pip, which reaches whatever index this machine has, makes a folder of wheels, and the build
takes everything from it (tests/containers/images.py mounts it with a pip.conf saying so).

The host's Python is not the image's: a dependency behind a marker such as redis's
``async-timeout; python_full_version < "3.11.3"`` is needed by one and not the other. pip cannot
resolve for another interpreter's markers, so :func:`unmet` walks the folder's metadata with the
image's own marker environment and the missing ones are added.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.containers.engine import CACHE, ROOT, podman, run

CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
#: The image's marker environment, from the pip inside it (its Python has no packaging of its own).
ENVIRONMENT_PROBE = (
    "import json; from pip._vendor.packaging.markers import default_environment as e; "
    "print(json.dumps(e()))"
)
#: A missing dependency can bring missing ones of its own; this many rounds is plenty.
ROUNDS = 5


#: The extras the Dockerfile installs (``pip install ".[otel]"``).
IMAGE_EXTRAS = ("otel",)


def wanted() -> list[str]:
    """What ``pip install ".[otel]"`` in the Dockerfile asks for: the dependencies, those of the
    image's extras, and the build backend."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = [req for name in IMAGE_EXTRAS for req in project["optional-dependencies"][name]]
    return [*project["dependencies"], *extras, *pyproject["build-system"]["requires"]]


def image_environment(python_image: str, log: Path) -> dict[str, str]:
    out = podman(
        "run", "--rm", "--network=none", python_image, "python3", "-c", ENVIRONMENT_PROBE, log=log
    )
    environment: dict[str, str] = json.loads(out)
    return environment


def requires_dist(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def unmet(requirements: list[str], folder: Path, environment: dict[str, str]) -> list[str]:
    """The requirements pip in the image will want (markers read for its Python) that no wheel in
    ``folder`` provides, without their markers (the host would read those for itself)."""
    have = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in folder.glob("*.whl")}
    todo = [Requirement(line) for line in requirements]
    todo = [r for r in todo if r.marker is None or r.marker.evaluate({**environment, "extra": ""})]
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        if name not in have:
            listed = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            missing.append(f"{requirement.name}{listed}{requirement.specifier}")
            continue
        extras = {"", *requirement.extras}
        for dependency in requires_dist(have[name]):
            marker = dependency.marker
            if marker is None or any(marker.evaluate({**environment, "extra": e}) for e in extras):
                todo.append(dependency)
    return sorted(set(missing))


def wheelhouse(python_image: str, log: Path) -> Path:
    """The folder of wheels for ``python_image``, from the cache or made now."""
    environment = image_environment(python_image, log)
    recipe = [*wanted(), CONSTRAINTS.read_text(), json.dumps(environment, sort_keys=True)]
    folder = CACHE / f"wheels-{hashlib.sha256('|'.join(recipe).encode()).hexdigest()[:12]}"
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "-c", str(CONSTRAINTS), "-w"]
    requirements = wanted()
    for _ in range(ROUNDS):
        run([*pip, str(partial), *requirements], log, timeout=1200)
        requirements = unmet(wanted(), partial, environment)
        if not requirements:
            partial.rename(folder)
            return folder
    raise AssertionError(f"wheels still missing for {python_image}: {requirements}")


__all__ = ["unmet", "wheelhouse"]
