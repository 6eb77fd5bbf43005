"""The container build's wheel folder reads markers for the image's Python, not the host's."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.containers.wheels import unmet


def make_wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {line}\n" for line in requires
    )
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{dist_info}/METADATA", metadata)


def environment(python: str) -> dict[str, str]:
    return {
        "python_version": python.rsplit(".", 1)[0],
        "python_full_version": python,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": python,
    }


def test_a_dependency_behind_the_images_python_marker_is_reported(tmp_path: Path) -> None:
    make_wheel(
        tmp_path,
        "redis",
        "8.1.0",
        ['async-timeout>=4.0.3; python_full_version < "3.11.3"', 'hiredis>=3; extra == "hiredis"'],
    )
    make_wheel(tmp_path, "hiredis", "3.5.0", [])
    wanted = ["redis[hiredis]>=5,<9", 'tomli; python_version < "3.11"']
    assert unmet(wanted, tmp_path, environment("3.11.2")) == ["async-timeout>=4.0.3"]
    assert unmet(wanted, tmp_path, environment("3.11.7")) == []


def test_an_extra_not_asked_for_is_not_wanted(tmp_path: Path) -> None:
    make_wheel(tmp_path, "redis", "8.1.0", ['hiredis>=3; extra == "hiredis"'])
    assert unmet(["redis"], tmp_path, environment("3.11.7")) == []
    assert unmet(["redis[hiredis]"], tmp_path, environment("3.11.7")) == ["hiredis>=3"]
