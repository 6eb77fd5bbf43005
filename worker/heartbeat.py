"""The heartbeat file: what a worker's consumer says of itself, and how the probes judge it.

The consumer's event loop writes it about once a second (worker/consumer_heartbeat.py);
``zapi-queue probe live`` and ``zapi-queue probe ready`` (worker/cli/probe.py) read it, with no
broker round trip. This module imports nothing but the standard library: a probe runs every
few seconds, often under a CPU limit, and must start fast.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process of a host, and a
container's probe runs beside its worker), so a wall clock stepped by NTP neither kills nor
revives a worker. The file holds no secret: times, a pid and three flags.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: A beat this far ahead of the probe's clock was not written by a worker of this host's
#: current boot (a copied file, a forged one): never alive. Both read the same clock, so a
#: small slack covers only the moment between the writer's reading and the probe's.
FUTURE_SLACK = 2.0
#: The longest age of a beat that still counts as fresh for readiness (capped by the
#: liveness timeout): a loop that has not ticked for this long is not fetching, whatever the
#: last beat said.
READY_WITHIN = 10.0
#: The file is a few flags and numbers; anything longer is not ours.
MAX_BYTES = 4096


class HeartbeatError(Exception):
    """The heartbeat cannot be written where the settings say (the message names the path)."""


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat. ``progress``: the last moment the consumer's loop ran with its fetch
    not stuck (monotonic seconds); ``started``: when the worker started (its start-up grace);
    ``connected``: to the broker, consumer running; ``fetching``: taking new jobs (false
    while its fetch is stuck, before it consumes, and once it is stopping)."""

    progress: float
    started: float
    pid: int
    connected: bool
    fetching: bool
    stopping: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def parse(text: str) -> Beat:
    """The beat ``text`` holds; ValueError for anything else (wrong types, missing fields,
    non-finite times, extra keys)."""
    if len(text) > MAX_BYTES:
        raise ValueError("longer than a heartbeat")
    data: Any = json.loads(text)
    if not isinstance(data, dict) or set(data) != set(Beat.__dataclass_fields__):
        raise ValueError("not a heartbeat's fields")
    times = data["progress"], data["started"]
    if not all(_is_number(value) and math.isfinite(value) for value in times):
        raise ValueError("times must be finite numbers")
    if not isinstance(data["pid"], int) or isinstance(data["pid"], bool) or data["pid"] <= 0:
        raise ValueError("pid must be a positive integer")
    flags = data["connected"], data["fetching"], data["stopping"]
    if not all(isinstance(flag, bool) for flag in flags):
        raise ValueError("flags must be true or false")
    return Beat(**data)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read(path: Path) -> Beat | None:
    """The beat at ``path``; None when there is none; ValueError when it is not a beat."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    try:
        return parse(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None


def write(path: Path, beat: Beat) -> None:
    """Replace the file at once (a temporary file renamed over it): a probe never reads half a
    beat. Its directory is created 0700; an existing one must be a directory of ours."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_ours(directory)
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".heartbeat-")
    except OSError as exc:
        raise HeartbeatError(f"cannot write the heartbeat in {directory}: {exc}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(beat.to_json())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise HeartbeatError(f"cannot write the heartbeat {path}: {exc}") from None


def _check_ours(directory: Path) -> None:
    """Another user's directory (a planted ``/tmp/zapi-queue-<uid>``) could fake our beats."""
    found = os.lstat(directory)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise HeartbeatError(f"{directory} is not a directory of this user: not writing there")


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def live_problem(beat: Beat | None, now: float, timeout: float) -> str | None:
    """Why a worker with this beat is not alive at ``now``, or None when it is: its consumer
    made progress within ``timeout`` seconds (a worker still starting: it started within
    ``timeout``, its start-up grace, which its first beat's progress is)."""
    if beat is None:
        return "no heartbeat (the worker has not started, or ZAPI_HEARTBEAT_FILE differs)"
    if beat.progress > now + FUTURE_SLACK or beat.started > now + FUTURE_SLACK:
        return "heartbeat dated in the future: not written by a worker of this host"
    age = now - beat.progress
    if age > timeout:
        doing = "consumer" if beat.connected else "worker (not connected)"
        return f"{doing} made no progress for {age:.0f} s (ZAPI_LIVENESS_TIMEOUT {timeout:g} s)"
    return None


def ready_problem(beat: Beat | None, now: float, timeout: float) -> str | None:
    """Why a worker with this beat should not count as ready, or None: alive, a fresh beat
    (within :data:`READY_WITHIN`, or ``timeout`` if shorter), connected and fetching."""
    problem = live_problem(beat, now, timeout)
    if problem is not None or beat is None:
        return problem
    age = now - beat.progress
    if age > min(timeout, READY_WITHIN):
        return f"last heartbeat {age:.0f} s old: the consumer is not keeping up its loop"
    if beat.stopping:
        return "stopping (a shutdown began): not taking new jobs"
    if not beat.connected:
        return "not connected to the broker yet"
    if not beat.fetching:
        return "connected but not fetching (starting, or its fetch gets no reply)"
    return None
