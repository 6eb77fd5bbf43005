"""``zapi-queue health``'s part on a Redis that lost its data (worker/redis_marker.py)."""

from __future__ import annotations

import contextlib
from typing import Any

import redis

from config import Settings
from worker.cli.common import RedisClients, when
from worker.redis_checks import redis_roles
from worker.redis_marker import Damaged, Marker, acknowledge_loss, read_marker

#: What a problem with the data ends with: how to stop it being reported.
_ONCE_DEALT_WITH = "once dealt with, run zapi-queue health --acknowledge-data-loss"


def check_data_kept(
    settings: Settings, clients: RedisClients, report: dict[str, Any], problems: list[str]
) -> None:
    """Each Redis' marker in ``report["redis_data"]``; a loss not yet acknowledged, a damaged
    marker, or no marker while workers answer (they write it at start-up), is a problem."""
    found: dict[str, dict[str, Any]] = {}
    workers = report.get("workers") or []
    for role, url in redis_roles(settings).items():
        try:
            marker = read_marker(clients(url))
        except redis.RedisError:
            continue  # unreachable: already a problem of its own
        if marker is None:
            found[role] = {"marker": False}
            if workers:
                problems.append(
                    f"the {role} Redis holds no zapi-queue marker while {len(workers)} "
                    "worker(s) run: it lost its data (restarted without persistence, flushed, "
                    "or failed over to an empty server); jobs queued before may be gone"
                )
            continue
        if isinstance(marker, Damaged):
            found[role] = {"marker": True, "damaged": marker.reason}
            problems.append(
                f"the {role} Redis' zapi-queue marker is damaged ({marker.reason}): something "
                "else wrote it, and it cannot tell since when the data is kept; jobs queued and "
                f"replies recorded may be gone; {_ONCE_DEALT_WITH} (it writes a new marker)"
            )
            continue
        found[role] = _marker_report(marker)
        if (lost_at := marker.unacknowledged_loss) is not None:
            problems.append(
                f"the {role} Redis lost its data at {when(lost_at)} UTC (restarted without "
                "persistence, flushed, or failed over to an empty server): jobs queued and "
                f"replies recorded before then may be gone; {_ONCE_DEALT_WITH}"
            )
    report["redis_data"] = found


def _marker_report(marker: Marker) -> dict[str, Any]:
    return {
        "marker": True,
        "since": marker.since,
        "restarted_at": marker.restarted_at,
        "lost_at": marker.lost_at,
        "loss_acknowledged": marker.lost_at is not None and not marker.unacknowledged_loss,
    }


def data_lines(found: dict[str, dict[str, Any]]) -> list[str]:
    """One readable line per Redis: since when its data is kept, restarts and losses."""
    lines = []
    for role, data in found.items():
        if not data["marker"]:
            lines.append(f"{role} Redis data: no marker (no worker started on it, or it was lost)")
            continue
        if "damaged" in data:
            lines.append(
                f"{role} Redis data: marker DAMAGED ({data['damaged']}), "
                "cannot tell since when it is kept"
            )
            continue
        line = f"{role} Redis data: kept since {when(data['since'])} UTC"
        if data["restarted_at"] is not None:
            line += f", last restart {when(data['restarted_at'])} UTC (data kept)"
        if data["lost_at"] is not None:
            state = "acknowledged" if data["loss_acknowledged"] else "NOT acknowledged"
            line += f", LOST its data at {when(data['lost_at'])} UTC ({state})"
        lines.append(line)
    return lines


def acknowledge_losses(settings: Settings, clients: RedisClients) -> None:
    """``--acknowledge-data-loss``: every reachable Redis' loss is marked dealt with (a damaged
    marker replaced by a new one)."""
    for url in redis_roles(settings).values():
        with contextlib.suppress(redis.RedisError):  # unreachable: health says so below
            acknowledge_loss(clients(url))
