"""Just enough of kustomize to render deploy/kubernetes/ where the kustomize binary is not.

Supported: ``resources`` (files and directories with their own kustomization), ``namespace``,
``images`` and ``patches`` (a file or an inline patch, strategic merge for Kubernetes' own kinds,
JSON merge (RFC 7386) for custom resources such as KEDA's, as kustomize does; ``$patch: delete``
removes a whole object). Any other field, directive or an unmatched patch is refused, so that
nothing kustomize would apply is silently left out of what the tests validate.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "images", "patches"})
#: Kinds that live outside any namespace (the only ones the manifests use).
CLUSTER_SCOPED = frozenset({"Namespace"})
#: Strategic merge's list keys (Kubernetes' patchMergeKey) for the lists the manifests patch;
#: a list under any other name is replaced whole, as strategic merge does without a key.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class KustomizeError(ValueError):
    """What this renderer cannot render as kustomize would; the message names the file."""


def load(path: Path) -> list[Manifest]:
    """Every document of one YAML file (empty ones skipped)."""
    with path.open(encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def render(directory: Path) -> list[Manifest]:
    """The objects ``kustomize build directory`` prints, in resource order."""
    path = directory / "kustomization.yaml"
    spec = load(path)[0]
    if unknown := set(spec) - FIELDS:
        raise KustomizeError(f"{path}: unsupported field(s) {sorted(unknown)}")
    objects: list[Manifest] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        objects += render(target) if target.is_dir() else load(target)
    for patch in spec.get("patches", []):
        objects = apply_patch(objects, _patch_documents(directory, patch), path)
    for image in spec.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    if namespace := spec.get("namespace"):
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    _refuse_duplicates(objects, path)
    return objects


def _patch_documents(directory: Path, entry: dict[str, Any]) -> list[Manifest]:
    if set(entry) - {"path", "patch"} or len(entry) != 1:
        raise KustomizeError(f"{directory}: a patch is one `path` or `patch` (no target)")
    if "path" in entry:
        return load(directory / entry["path"])
    return [doc for doc in yaml.safe_load_all(entry["patch"]) if doc is not None]


def identity(obj: Manifest) -> tuple[str, str, str]:
    """(API group, kind, name): what a patch is matched on (the version is not)."""
    return obj["apiVersion"].rpartition("/")[0], obj["kind"], obj["metadata"]["name"]


def apply_patch(objects: list[Manifest], patches: list[Manifest], where: Path) -> list[Manifest]:
    """``objects`` with each patch applied to the one object of its identity."""
    for patch in patches:
        matches = [i for i, obj in enumerate(objects) if identity(obj) == identity(patch)]
        if len(matches) != 1:
            raise KustomizeError(f"{where}: patch {identity(patch)} matches {len(matches)}")
        index = matches[0]
        if patch.get("$patch") == "delete":
            objects = objects[:index] + objects[index + 1 :]
            continue
        objects[index] = merge(objects[index], patch, strategic=is_builtin(patch))
    return objects


def is_builtin(obj: Manifest) -> bool:
    """Kubernetes' own kinds (core, or a ``*.k8s.io`` group, or no dot): strategic merge."""
    group = obj["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def merge(base: Any, patch: Any, *, strategic: bool, key: str | None = None) -> Any:
    """``patch`` merged into (a copy of) ``base``: maps key by key, ``None`` deletes a key, and
    lists replaced whole, except, in a strategic merge, those with a merge key (MERGE_KEYS)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        merged = copy.deepcopy(base)
        for name, value in patch.items():
            if name.startswith("$"):
                raise KustomizeError(f"unsupported patch directive {name!r}")
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = merge(base.get(name), value, strategic=strategic, key=name)
        return merged
    merge_key = MERGE_KEYS.get(key or "") if strategic else None
    if merge_key and _keyed(base, merge_key) and _keyed(patch, merge_key):
        assert isinstance(base, list)
        assert isinstance(patch, list)
        merged_list = copy.deepcopy(base)
        for item in patch:
            wanted = item[merge_key]
            found = [i for i, old in enumerate(merged_list) if old.get(merge_key) == wanted]
            if found:
                merged_list[found[0]] = merge(merged_list[found[0]], item, strategic=True)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _keyed(items: Any, key: str) -> bool:
    """A list of maps that each have ``key``: merged item by item, else replaced whole."""
    return isinstance(items, list) and all(isinstance(i, dict) and key in i for i in items)


def pod_spec(obj: Manifest) -> dict[str, Any] | None:
    """The pod template's spec of a workload (Deployment and the like), else None."""
    spec: dict[str, Any] | None = obj.get("spec", {}).get("template", {}).get("spec")
    return spec


def containers(obj: Manifest) -> list[dict[str, Any]]:
    """Every container (init containers too) of a workload's pod template."""
    spec = pod_spec(obj) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _set_image(obj: Manifest, image: dict[str, str]) -> None:
    if unknown := set(image) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"images: unsupported field(s) {sorted(unknown)}")
    for container in containers(obj):
        name, at, digest = container["image"].partition("@")
        tag = ""
        if ":" in name.rpartition("/")[2]:
            name, _, tag = name.rpartition(":")
        if name != image["name"]:
            continue
        new = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{new}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{new}:{image['newTag']}"
        else:  # a new name keeps the tag or digest it had
            container["image"] = new + (f":{tag}" if tag else "") + (at + digest)


def _refuse_duplicates(objects: list[Manifest], where: Path) -> None:
    seen = [(*identity(obj), obj["metadata"].get("namespace")) for obj in objects]
    if len(seen) != len(set(seen)):
        raise KustomizeError(f"{where}: the same object twice")
