"""Stand-in base images, and the application image built from the Dockerfile on top of them.

The real base images (python, redis) cannot be pulled on CI's machines: a Debian bookworm
made by debootstrap stands in for both (python3 3.11 with pip and venv, redis-server 7.0). It
is built once and kept in .cache/containers/ (outside git), so a second run imports a tarball
instead of downloading Debian again. The compose file and the Dockerfile take the images
through variables (REDIS_IMAGE, PYTHON_IMAGE) whose defaults, the real images pinned by digest,
stay the users'.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.containers.engine import CACHE, ROOT, podman, run
from tests.containers.wheels import wheelhouse

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "redis-server", "redis-tools")
MIRROR = os.environ.get("ZAPI_DEBOOTSTRAP_MIRROR", "http://deb.debian.org/debian")
#: The official redis image is built with protected mode off; Debian's default (on) refuses
#: every client from another container when Redis has no password.
REDIS_WRAPPER = '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n'
STANDIN_PYTHON = "localhost/zapi-standin-python:" + SUITE
STANDIN_REDIS = "localhost/zapi-standin-redis:" + SUITE
LABEL = "zapi-queue.standin"
APP_IMAGE = "localhost/zapi-queue:latest"
SIM_IMAGE = "localhost/zapi-queue-sim:latest"


def recipe_key() -> str:
    """Changes when what goes into the stand-ins changes, so a stale cache is rebuilt."""
    recipe = "|".join((SUITE, MIRROR, *PACKAGES, REDIS_WRAPPER, "v1"))
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def rootfs_tarball(log: Path) -> Path:
    """The stand-in's root file system as a tarball, from the cache or from debootstrap."""
    tarball = CACHE / f"{SUITE}-standin-{recipe_key()}.tar"
    if tarball.exists():
        return tarball
    work = CACHE / "rootfs"
    shutil.rmtree(work, ignore_errors=True)
    include = ",".join(PACKAGES)
    run(
        ["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(work), MIRROR],
        log,
        timeout=900,
    )
    # pip may install into the system Python, as it does in the python image.
    for marker in work.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for cached in (work / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()
    shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
    (work / "data").mkdir(exist_ok=True)
    local_bin = work / "usr/local/bin"
    (local_bin / "python").symlink_to("/usr/bin/python3")
    wrapper = local_bin / "redis-server"
    wrapper.write_text(REDIS_WRAPPER)
    wrapper.chmod(0o755)
    partial = tarball.with_suffix(".partial")
    run(["tar", "-C", str(work), "-cf", str(partial), "."], log)
    partial.rename(tarball)
    shutil.rmtree(work)
    return tarball


def image_label(image: str, log: Path) -> str | None:
    done = podman(
        "image",
        "inspect",
        "--format",
        '{{index .Labels "' + LABEL + '"}}',
        image,
        log=log,
        check=False,
    )
    return done.strip() or None


@dataclass(frozen=True)
class BaseImages:
    python: str
    redis: str

    def variables(self) -> dict[str, str]:
        """What the compose file and the Dockerfile read to use them."""
        return {"PYTHON_IMAGE": self.python, "REDIS_IMAGE": self.redis}


def stand_ins(log: Path) -> BaseImages:
    """The stand-in images in podman's store, imported from the cached tarball if missing."""
    key = recipe_key()
    changes = {
        STANDIN_PYTHON: ["WORKDIR /", 'CMD ["python3"]'],
        STANDIN_REDIS: ["WORKDIR /data", 'CMD ["redis-server"]'],
    }
    for image, change in changes.items():
        if image_label(image, log) == key:
            continue
        tarball = rootfs_tarball(log)
        flags = [f"--change={c}" for c in [*change, f"LABEL {LABEL}={key}"]]
        podman("import", *flags, str(tarball), image, log=log)
    return BaseImages(python=STANDIN_PYTHON, redis=STANDIN_REDIS)


#: pip's site-wide configuration inside the build: this folder's wheels, no index.
PIP_CONF = "[global]\nno-index = true\nfind-links = /wheels\n"


def build_app_image(bases: BaseImages, log: Path) -> None:
    """``podman build`` of the Dockerfile as a user would, with two differences CI needs: the
    stand-in base through PYTHON_IMAGE, and no network: pip finds the wheels of
    :func:`wheelhouse` through a pip.conf mounted for the build only (the images keep neither)."""
    wheels = wheelhouse(bases.python, log)
    conf = CACHE / "pip.conf"
    conf.write_text(PIP_CONF)
    args = ["podman", "build", "--pull=never", "--network=none"]
    args += ["--build-arg", f"PYTHON_IMAGE={bases.python}"]
    args += ["-v", f"{wheels}:/wheels:ro", "-v", f"{conf}:/etc/pip.conf:ro"]
    run([*args, "-t", APP_IMAGE, str(ROOT)], log, timeout=1200)
    # Compose's sim profile runs the fake Z-API from the Dockerfile's `sim` target.
    run([*args, "--target", "sim", "-t", SIM_IMAGE, str(ROOT)], log, timeout=1200)


def debootstrap_works() -> bool:
    """debootstrap needs root (chroot, mknod)."""
    return shutil.which("debootstrap") is not None and os.geteuid() == 0


__all__ = [
    "APP_IMAGE",
    "BaseImages",
    "build_app_image",
    "debootstrap_works",
    "stand_ins",
]
