"""``zapi-queue health``: what an operator or a container healthcheck asks first."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import redis

from config import Settings
from tasks.contract.redaction import redact
from tasks.state.deadletter import DeadLetterStore
from tasks.state.instances import InstanceEvents
from tasks.state.webhook_stats import WebhookStats
from worker.cli.common import RedisClients, settings_or_exit, when
from worker.cli.health_data import acknowledge_losses, check_data_kept, data_lines
from worker.cli.main import main
from worker.fetch_scripts import REJECTED_KEY
from worker.instance_report import instance_report
from worker.queue_census import QUEUE, Census, take_census
from worker.redis_checks import maxmemory_policy, policy_problem, redis_roles


@main.command("health")
@click.option("--timeout", default=3.0, show_default=True, help="seconds to wait for workers")
@click.option("--min-workers", default=1, show_default=True, help="fewer answering is unhealthy")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option(
    "--acknowledge-data-loss",
    is_flag=True,
    help="a Redis' reported data loss has been dealt with: stop reporting it",
)
def health(timeout: float, min_workers: int, as_json: bool, acknowledge_data_loss: bool) -> None:
    """Broker reachable, its eviction policy, workers answering, queue depth, dead letters,
    items set aside, a Redis that lost its data, and each instance's connection, pause, jobs
    waiting, dead letters and sends in the last minute. Exit 1 if unhealthy.

    Usable as a container or monitoring healthcheck.
    """
    settings = settings_or_exit()
    broker_url = settings.celery_broker_url.get_secret_value()
    report: dict[str, Any] = {"broker": redact(broker_url), "broker_reachable": False}
    problems: list[str] = []
    with RedisClients(retries=1) as clients:
        if acknowledge_data_loss:
            acknowledge_losses(settings, clients)
        census = _check_broker(clients(broker_url), report, problems)
        _check_state(settings, clients(settings.state_redis_url), report, problems, census)
        if report["broker_reachable"]:
            from worker.celery_app import app

            replies = app.control.ping(timeout=timeout) or []
            report["workers"] = sorted(name for reply in replies for name in reply)
            if len(report["workers"]) < min_workers:
                answering = plural(len(report["workers"]), "worker")
                problems.append(f"{answering} answering, {min_workers} wanted")
        check_data_kept(settings, clients, report, problems)
    report["healthy"] = not problems
    report["problems"] = problems
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo("\n".join(readable(report)))
    if problems:
        sys.exit(1)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 worker``, ``2 workers``, ``0 dead letters``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def readable(report: dict[str, Any]) -> list[str]:
    """The report for a person: one line per topic, no Python reprs (``--json`` is for
    machines)."""
    lines = [f"healthy: {'yes' if report['healthy'] else 'NO'}"]
    broker = "reachable" if report["broker_reachable"] else "UNREACHABLE"
    if "maxmemory_policy" in report:
        broker += f", maxmemory-policy {report['maxmemory_policy']}"
    lines.append(f"broker: {report['broker']} ({broker})")
    if "state_redis" in report:
        policy = report.get("state_maxmemory_policy", "?")
        lines.append(f"state Redis: {report['state_redis']} (maxmemory-policy {policy})")
    if "workers" in report:
        workers = report["workers"]
        names = f": {', '.join(workers)}" if workers else ""
        lines.append(f"workers: {plural(len(workers), 'worker')} answering{names}")
    if "queue_depth" in report:
        lines.append(
            f"queue: {plural(report['queue_depth'], 'job')} waiting, "
            f"{plural(report['set_aside_items'], 'item')} set aside (not Celery messages)"
        )
    if "dead_letters" in report:
        lines.append(
            f"dead letters: {plural(report['dead_letters'], 'dead letter')}, "
            f"{report['dead_letters_dropped']} dropped by the cap"
        )
    connection = report.get("instance_connection")
    if isinstance(connection, dict):
        state = "connected" if connection["connected"] else "DISCONNECTED"
        since = when(connection["at"]) if connection.get("at") else "?"
        error = f": {connection['error']}" if connection.get("error") else ""
        lines.append(f"instance: {state} since {since} UTC{error}")
    elif connection is not None:
        lines.append(f"instance: {connection}")
    for alias, instance in report.get("instances", {}).items():
        paused = f", PAUSED for {instance['paused_for']:g}s" if instance["paused_for"] else ""
        if instance["held_for"]:
            paused += f", HELD (disconnected) for up to {instance['held_for']:g}s"
        connection = instance["connection"]
        state = "no connection event yet"
        if connection is not None:
            state = "connected" if connection["connected"] else "DISCONNECTED"
        lines.append(
            f"instance {alias} ({instance['label']}): {instance['rate_limit']:g}/s{paused}, {state}"
        )
        lines.append(f"  {_instance_counts(instance, report.get('queue_census_complete', True))}")
        queued = instance.get("zapi_queue")
        if queued is not None:
            partial = " (PARTIAL: longer than ZAPI_QUEUE_PAGES)" if queued["partial"] else ""
            lines.append(
                f"  Z-API's own queue: {plural(queued['ours'], 'message')} of ours left of "
                f"{queued['total']}, {queued['withdrawn']} withdrawn, at {when(queued['at'])} "
                f"UTC{partial}"
            )
    lines.extend(data_lines(report.get("redis_data", {})))
    if "webhook_callbacks" in report:
        counts = report["webhook_callbacks"]
        shown = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
        lines.append(f"webhook callbacks: {shown or 'none yet'}")
    problems = report["problems"]
    lines.append("problems: none" if not problems else "problems:")
    lines.extend(f"  - {problem}" for problem in problems)
    return lines


def _instance_counts(instance: dict[str, Any], complete: bool) -> str:
    """``3 jobs queued, 1 in workers, 0 dead letters, 42 sends in the last minute``."""
    at_least = "" if complete else "at least "
    waiting = "jobs waiting unknown (broker unreadable)"
    if instance["queued"] is not None:
        waiting = (
            f"{at_least}{plural(instance['queued'], 'job')} queued, "
            f"{at_least}{instance['in_workers']} in workers"
        )
    return (
        f"{waiting}, {plural(instance['dead_letters'], 'dead letter')}, "
        f"{plural(instance['sends_last_minute'], 'send')} in the last minute"
    )


def _check_broker(
    client: redis.Redis, report: dict[str, Any], problems: list[str]
) -> Census | None:
    """Reachable, queue depths, and the eviction policy: an evicting broker loses queued jobs.
    Returns the jobs waiting by instance (None: the broker could not be read)."""
    try:
        client.ping()
        report["broker_reachable"] = True
        report["maxmemory_policy"] = maxmemory_policy(client)
        report["queue_depth"] = int(client.llen(QUEUE))
        # Items found in the queue that were not Celery messages (worker/transport.py).
        report["set_aside_items"] = int(client.llen(REJECTED_KEY))
        census = take_census(client)
        report["queue_census_complete"] = census.complete
    except redis.RedisError as exc:
        problems.append(f"broker unreachable ({type(exc).__name__})")
        return None
    if problem := policy_problem(report["maxmemory_policy"], "broker Redis"):
        problems.append(problem)
    return census


def _check_state(
    settings: Settings,
    client: redis.Redis,
    report: dict[str, Any],
    problems: list[str],
    census: Census | None,
) -> None:
    """Dead letters, instance events, webhook counts, and the eviction policy of the state
    Redis (``client``) when it is another server."""
    try:
        if "state" in redis_roles(settings):
            report["state_redis"] = redact(settings.state_redis_url)
            report["state_maxmemory_policy"] = maxmemory_policy(client)
            if problem := policy_problem(report["state_maxmemory_policy"], "state Redis"):
                problems.append(problem)
        store = DeadLetterStore.from_settings(client, settings)
        report["dead_letters"] = store.count()
        report["dead_letters_dropped"] = store.dropped()
        _instance_events(client, settings, report, census, store.count_by_instance())
    except redis.RedisError as exc:
        problems.append(f"dead letters unreadable ({type(exc).__name__})")


def _instance_events(
    client: redis.Redis,
    settings: Settings,
    report: dict[str, Any],
    census: Census | None,
    letters: dict[str, int],
) -> None:
    """Each instance's state and the webhook's counts (shown, not judged: a disconnected phone
    is not the worker's illness, and Z-API queues sends meanwhile)."""
    if settings.zapi_instance_id is not None:
        connection = InstanceEvents(client).get(settings.zapi_instance_id)
        report["instance_connection"] = connection.as_dict() if connection else "no event yet"
    report["instances"] = {
        alias: instance_report(client, instance, census, letters.get(alias, 0))
        for alias, instance in sorted(settings.instances().items())
    }
    report["webhook_callbacks"] = WebhookStats(client).counts()
