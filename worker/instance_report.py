"""One Z-API instance at a glance, as ``zapi-queue health`` prints it and the console's
``/instances`` page shows it: one place computes it, both read it.

Read from the state Redis (connection, pause, hold, sends, Z-API's queue) and from the broker's
census of waiting jobs (worker/queue_census.py), taken once for all instances by the caller.
"""

from __future__ import annotations

from typing import Any

import redis
from pydantic import SecretStr

from config import Settings
from config.instances import DEFAULT_ALIAS, Instance
from tasks.state.instances import InstanceEvents
from tasks.state.ratelimit import held_for, paused_for
from tasks.state.sends import sends_in_last_minute
from tasks.state.zapi_queue import ZapiQueueBook
from worker.queue_census import Census


def instance_report(
    client: redis.Redis, instance: Instance, census: Census | None, dead_letters: int
) -> dict[str, Any]:
    """Its limit, its pause and hold, its phone's connection, its jobs waiting (None when the
    broker could not be read), dead letters, recent sends and the last reconciliation of its
    queue at Z-API."""
    connection = InstanceEvents(client).get(instance.instance_id)
    alias = instance.alias
    return {
        "label": instance.label,
        "rate_limit": instance.rate_limit,
        "paused_for": round(paused_for(client, instance), 1),
        "held_for": round(held_for(client, instance.instance_id), 1),
        "connection": connection.as_dict() if connection else None,
        "queued": census.queued[alias] if census else None,
        "in_workers": census.fetched[alias] if census else None,
        "dead_letters": dead_letters,
        "sends_last_minute": sends_in_last_minute(client, instance.instance_id),
        "zapi_queue": zapi_queue(client, instance),
    }


def zapi_queue(client: redis.Redis, instance: Instance) -> dict[str, Any] | None:
    """The last reconciliation of the instance's queue at Z-API (tasks/reconcile.py): how many
    of our messages it left there, and when; None if none ran."""
    last = ZapiQueueBook(client, instance.instance_id).last()
    return last.as_dict() if last is not None else None


def watched_instances(settings: Settings) -> list[Instance]:
    """Every instance the fleet sends through, by alias: those configured, and ``default``
    from ``ZAPI_INSTANCE_ID`` alone (a reader such as the console is given no token: its
    Instance then holds empty ones, never used)."""
    found = dict(settings.instances())
    if settings.zapi_instance_id and DEFAULT_ALIAS not in found:
        found[DEFAULT_ALIAS] = Instance(
            alias=DEFAULT_ALIAS,
            label=settings.instance_alias,
            instance_id=settings.zapi_instance_id,
            instance_token=SecretStr(""),
            client_token=SecretStr(""),
            rate_limit=settings.zapi_rate_limit,
            rate_burst=settings.zapi_rate_burst,
        )
    return [found[alias] for alias in sorted(found)]
