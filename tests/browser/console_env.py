"""What the console process of the browser tests is given: its login, its Redis databases
(of the session's server) and its environment (devtools.processes.ConsoleProcess starts it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis

from tests.console_fleet import fleet_env

#: The console's login in the browser tests.
LOGIN = ("ops", "browser-pass-4417")
#: Databases of the session's Redis the console's browser tests use, emptied before and after
#: each module (apart from the session worker's 0 and 1; the stores' unit tests that share
#: numbers with them run in other processes: `make test` leaves the browser tests out).
BROKER_DB, STATE_DB, RESULTS_DB = 10, 11, 12


@dataclass(frozen=True)
class ConsoleDbs:
    """The console's databases: clients to write a page's story with, and the server's URL."""

    url: str
    broker: redis.Redis
    state: redis.Redis
    results: redis.Redis

    @property
    def broker_url(self) -> str:
        return f"{self.url}/{BROKER_DB}"


def console_env(dbs: ConsoleDbs) -> dict[str, str]:
    """The environment of a console over ``dbs``, for the seeded fleet, with :data:`LOGIN`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ZAPI_", "CELERY_"))
    }
    env.update(
        fleet_env(),
        CELERY_BROKER_URL=dbs.broker_url,
        ZAPI_STATE_REDIS_URL=f"{dbs.url}/{STATE_DB}",
        CELERY_RESULT_BACKEND=f"{dbs.url}/{RESULTS_DB}",
        ZAPI_CONSOLE_AUTH=":".join(LOGIN),
        PYTHONUNBUFFERED="1",
    )
    return env
