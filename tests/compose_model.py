"""docker-compose.yml as Compose reads it, without an engine: what each container is given.

The rules followed (Compose specification, "Interpolation" and "env_file"; the same in Docker
Compose 2.17+ and podman-compose 1.6, whose source was read for them):

* ``${VAR}``: substituted from the shell, else from the env files: ``.env`` in the project
  directory, or the ``--env-file`` files *instead* (several: later ones win; podman-compose 1.6
  takes only the last one given). ``$$`` is a literal ``$``.
* ``${VAR:-d}`` (unset or empty), ``${VAR-d}`` (unset): ``d``; ``${VAR:?e}`` / ``${VAR?e}``
  stop the whole command with ``e``; ``${VAR:+a}`` / ``${VAR+a}``: ``a`` when set. Nested.
* A container's variables: its ``env_file`` files, then its ``environment`` (which wins); an
  ``environment`` key with no value takes the substitution variable of that name, if set.
* Services whose ``profiles`` do not meet ``COMPOSE_PROFILES`` are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class MissingVariable(Exception):  # noqa: N818 - Compose's own wording
    """``${VAR:?message}`` with VAR unset (or empty): Compose stops, printing both."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def _closing(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"no closing brace in {text!r}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` with every ``$`` form substituted from ``env``, as Compose does."""
    out, index = [], 0
    while index < len(value):
        char = value[index]
        if char != "$":
            out.append(char)
            index += 1
            continue
        following = value[index + 1 : index + 2]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "{":
            end = _closing(value, index + 2)
            out.append(_braced(value[index + 2 : end], env))
            index = end + 1
        elif (bare := NAME.match(value, index + 1)) is not None:
            out.append(env.get(bare[0], ""))
            index = bare.end()
        else:
            out.append("$")
            index += 1
    return "".join(out)


def _braced(content: str, env: Mapping[str, str]) -> str:
    name = NAME.match(content)
    if name is None:
        raise ValueError(f"invalid interpolation ${{{content}}}")
    rest = content[name.end() :]
    value = env.get(name[0])
    if not rest:
        return value or ""
    operator = next((op for op in OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise ValueError(f"invalid interpolation ${{{content}}}")
    operand = rest[len(operator) :]
    absent = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        return interpolate(operand, env) if absent else str(value)
    if operator.endswith("?"):
        if absent:
            raise MissingVariable(name[0], interpolate(operand, env))
        return str(value)
    return "" if absent else interpolate(operand, env)  # :+ and +


def dotenv(path: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """An env file's variables: ``KEY=value`` lines, ``#`` comments, quoted values unquoted;
    ``${VAR}`` in unquoted and double-quoted values substituted from what came before."""
    seen: dict[str, str] = dict(env or {})
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            value = raw[1:-1]
        else:
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1]
            value = interpolate(raw, {**seen, **found})
        found[key.strip()] = value
    return found


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def substitution_env(
    env_files: Sequence[Path], shell: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What ``${VAR}`` reads: the env files in order (later wins), the shell above them all.
    ``env_files`` is ``[project/.env]`` when no ``--env-file`` is given (if it exists)."""
    merged: dict[str, str] = {}
    for path in env_files:
        merged.update(dotenv(path, {**merged, **(shell or {})}))
    return {**merged, **(shell or {})}


def _walk(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def containers(env: Mapping[str, str], project: Path = ROOT) -> dict[str, dict[str, Any]]:
    """Each active service, interpolated, with ``environ``: every variable its container gets.
    Raises MissingVariable as ``docker compose up`` would (the whole file is interpolated)."""
    compose = _walk(load(), env)
    active = {p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()}
    result = {}
    for name, service in compose["services"].items():
        if service.get("profiles") and not active & set(service["profiles"]):
            continue
        environ: dict[str, str] = {}
        files = service.get("env_file", [])
        for file in [files] if isinstance(files, str) else files:
            environ.update(dotenv(project / file))
        for key, value in (service.get("environment") or {}).items():
            if value is not None:
                environ[key] = str(value)
            elif key in env:
                environ[key] = env[key]
        result[name] = {**service, "environ": environ}
    return result
