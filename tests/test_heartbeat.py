"""The heartbeat file and the probes' decisions (worker/heartbeat.py, worker/cli/probe.py), and
the consumer's test of a stuck fetch (worker/consumer_heartbeat.py): no worker, no Redis."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.cli import invoke_cli
from worker import heartbeat
from worker.cli.main import COMMAND_MODULES, main
from worker.consumer_heartbeat import (
    FETCH_REPLY_GRACE,
    LOOP_TURN_GRACE,
    fetch_overdue,
    loop_stalled,
)
from worker.fetch_wake import WakingPoller
from worker.heartbeat import FUTURE_SLACK, READY_WITHIN, Beat, HeartbeatError

times = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
timeouts = st.floats(min_value=0.1, max_value=86_400)


def beats(progress: Any = finite, started: Any = finite) -> Any:
    return st.builds(
        Beat,
        progress=progress,
        started=started,
        pid=st.integers(1, 2**22),
        connected=st.booleans(),
        fetching=st.booleans(),
        stopping=st.booleans(),
    )


@given(beats())
def test_a_beat_reads_back_as_written(beat: Beat) -> None:
    assert heartbeat.parse(beat.to_json()) == beat


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | times | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
def test_anything_but_a_beat_is_refused_as_a_value_error(text: str) -> None:
    try:
        beat = heartbeat.parse(text)
    except ValueError:
        return
    assert isinstance(beat, Beat)  # only a well-formed beat gets through


@given(beats(), st.sampled_from(sorted(Beat.__dataclass_fields__)), json_values)
def test_a_beat_with_one_field_of_another_kind_is_refused(
    beat: Beat, field: str, value: Any
) -> None:
    data = json.loads(beat.to_json())
    original = data[field]
    data[field] = value
    kinds_match = type(value) is type(original) or (
        field in ("progress", "started") and type(value) in (int, float)
    )
    still_a_beat = (
        kinds_match
        and (field != "pid" or value > 0)
        and (not isinstance(value, float) or math.isfinite(value))
    )
    try:
        heartbeat.parse(json.dumps(data))
    except ValueError:
        refused = True
    else:
        refused = False
    assert refused == (not still_a_beat)


@given(beats(), finite, timeouts)
def test_live_is_exactly_recent_progress_never_a_future_date(
    beat: Beat, now: float, timeout: float
) -> None:
    problem = heartbeat.live_problem(beat, now, timeout)
    future = beat.progress > now + FUTURE_SLACK or beat.started > now + FUTURE_SLACK
    stale = now - beat.progress > timeout
    assert (problem is None) == (not future and not stale)
    if future:
        assert problem is not None
        assert "future" in problem


@given(beats(), finite, timeouts)
def test_ready_needs_alive_fresh_connected_fetching_and_not_stopping(
    beat: Beat, now: float, timeout: float
) -> None:
    problem = heartbeat.ready_problem(beat, now, timeout)
    fresh = now - beat.progress <= min(timeout, READY_WITHIN)
    wanted = (
        heartbeat.live_problem(beat, now, timeout) is None
        and fresh
        and beat.connected
        and beat.fetching
        and not beat.stopping
    )
    assert (problem is None) == wanted


def test_no_beat_is_neither_alive_nor_ready() -> None:
    assert heartbeat.live_problem(None, 0.0, 60) is not None
    assert heartbeat.ready_problem(None, 0.0, 60) is not None


def test_the_file_is_replaced_whole_in_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "probes" / "worker.heartbeat"
    first = Beat(progress=1.0, started=1.0, pid=7, connected=False, fetching=False)
    heartbeat.write(path, first)
    second = Beat(progress=2.0, started=1.0, pid=7, connected=True, fetching=True)
    heartbeat.write(path, second)
    assert heartbeat.read(path) == second
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert os.listdir(path.parent) == ["worker.heartbeat"]  # no temporary file left
    heartbeat.remove(path)
    heartbeat.remove(path)  # gone already: fine
    assert heartbeat.read(path) is None


def test_a_directory_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    """A planted symlink (``/tmp/zapi-queue-<uid>`` made by someone else) is not written into."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "planted").symlink_to(target)
    beat = Beat(progress=1.0, started=1.0, pid=7, connected=True, fetching=True)
    with pytest.raises(HeartbeatError, match="not a directory of this user"):
        heartbeat.write(tmp_path / "planted" / "worker.heartbeat", beat)
    assert not list(target.iterdir())


def test_reading_refuses_binary_and_oversized_files(tmp_path: Path) -> None:
    path = tmp_path / "worker.heartbeat"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="not UTF-8"):
        heartbeat.read(path)
    path.write_text(" " * 10_000 + Beat(1.0, 1.0, 7, True, True).to_json())
    with pytest.raises(ValueError, match="longer than a heartbeat"):
        heartbeat.read(path)


def probe_env(path: Path, timeout: float = 20) -> dict[str, str]:
    return {"ZAPI_HEARTBEAT_FILE": str(path), "ZAPI_LIVENESS_TIMEOUT": str(timeout)}


@pytest.mark.parametrize(
    ("content", "live", "ready", "said"),
    [
        (None, 1, 1, "no heartbeat"),
        ("{not json", 1, 1, "unreadable heartbeat"),
        (Beat(0, 0, 7, True, True), 0, 0, "consumer progress"),
        (Beat(-12, -30, 7, True, True), 0, 1, "12 s old"),  # alive, not fresh: READY_WITHIN
        (Beat(-25, -30, 7, True, True), 1, 1, "no progress for 25 s"),
        (Beat(60, 0, 7, True, True), 1, 1, "future"),
        (Beat(0, 0, 7, False, False), 0, 1, "not connected"),
        (Beat(0, 0, 7, True, False), 0, 1, "not fetching"),
        (Beat(0, 0, 7, False, False, stopping=True), 0, 1, "stopping"),
    ],
)
def test_the_probe_commands_exit_with_one_line(
    tmp_path: Path, content: Beat | str | None, live: int, ready: int, said: str
) -> None:
    path = tmp_path / "worker.heartbeat"
    if isinstance(content, Beat):  # times relative to now
        now = time.monotonic()
        content = Beat(
            content.progress + now,
            content.started + now,
            content.pid,
            content.connected,
            content.fetching,
            content.stopping,
        ).to_json()
    if content is not None:
        path.write_text(content)
    results = {which: invoke_cli(probe_env(path), "probe", which) for which in ("live", "ready")}
    assert (results["live"].exit_code, results["ready"].exit_code) == (live, ready)
    for result in results.values():
        assert len(result.stdout.splitlines()) == 1
    failing = [r.stdout for r in results.values() if r.exit_code] or [results["live"].stdout]
    assert said in failing[0]


def test_the_probe_imports_neither_celery_nor_redis(tmp_path: Path) -> None:
    """The probe's path stays lean: the whole CLI imports Celery, kombu, redis and httpx."""
    code = (
        "import sys\n"
        "from worker.cli import main\n"
        "try:\n    main(['probe', 'live'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('celery', 'kombu', 'redis', 'httpx') if m in sys.modules))"
    )
    env = {**os.environ, **probe_env(tmp_path / "none")}
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip().endswith("[]"), shown.stdout


def test_every_command_is_found_in_the_module_listed_for_it() -> None:
    """The lazy command table (worker/cli/main.py) and the commands the modules register."""
    for name, module in COMMAND_MODULES.items():
        command = main.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None, name
        assert command.callback is not None
        assert command.callback.__module__ == module
    assert set(main.commands) == set(COMMAND_MODULES)


def fetching(sent_ago: float, sock: socket.socket | None) -> Any:
    """A consumer whose channel sent its fetch ``sent_ago`` seconds ago on ``sock``."""
    connection = SimpleNamespace(_sock=sock)
    channel = SimpleNamespace(
        _in_poll=connection if sock else None,
        _brpop_sent_at=time.monotonic() - sent_ago,
        brpop_timeout=1,
    )
    return SimpleNamespace(task_consumer=SimpleNamespace(channel=channel))


def test_a_fetch_without_a_reply_past_its_bound_is_overdue_one_with_a_reply_is_not() -> None:
    ours, server = socket.socketpair()
    with ours, server:
        late = 1 + FETCH_REPLY_GRACE + 1
        assert not fetch_overdue(fetching(0.5, ours), time.monotonic())  # within its bound
        assert fetch_overdue(fetching(late, ours), time.monotonic())  # no answer is coming
        assert not fetch_overdue(fetching(late, None), time.monotonic())  # nothing in flight
        server.sendall(b"*-1\r\n")  # the reply is there, unread: prefetch slots are full
        assert not fetch_overdue(fetching(late, ours), time.monotonic())
    assert not fetch_overdue(SimpleNamespace(), time.monotonic())  # no task consumer yet


def test_with_no_event_loop_a_poller_that_stopped_turning_is_a_stalled_loop() -> None:
    """Under gevent the beat comes from a timer: progress is the poller's last turn."""
    poller = WakingPoller()
    consumer = SimpleNamespace(connection=SimpleNamespace(transport=SimpleNamespace(cycle=poller)))
    try:
        now = time.monotonic()
        assert not loop_stalled(consumer, now)  # it just turned
        assert not loop_stalled(consumer, poller.turned_at + LOOP_TURN_GRACE)
        assert loop_stalled(consumer, poller.turned_at + LOOP_TURN_GRACE + 0.1)
        assert not loop_stalled(SimpleNamespace(connection=None), now + 3600)  # nothing to judge
    finally:
        poller.close()
