"""A fleet's state as the console reads it, written into Redis the way the product writes it
(its own stores), for the console's page tests and browser tests to share.

``seed_fleet`` gives two instances a story each: ``default`` disconnected (its phone's error
quoting a phone number), paused after 429s, with sends and 429s this minute and earlier in the hour,
a job queued and one in a worker, two delivery failures and a reconciliation of Z-API's queue;
``shop-b`` connected and idle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis
from celery import Celery

from config import Settings
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.deliveries import failure_text
from tasks.state.instances import InstanceEvents
from tasks.state.ratelimit import RateLimiter
from tasks.state.sends import count_refusal, sent_counter
from tasks.state.zapi_queue import LastPass, ZapiQueueBook
from tests.bodies import unique_body
from worker.queue_census import QUEUE, UNACKED_KEY

DEFAULT_ID = "console-inst-default"
SHOP_B_ID = "console-inst-shop-b"
#: ZAPI_INSTANCES of the seeded fleet: an entry is configured with its tokens; ``default`` is
#: known by ZAPI_INSTANCE_ID alone, as compose gives the console.
INSTANCES = {"shop-b": {"instance_id": SHOP_B_ID, "instance_token": "itok-b-SECRET"}}
#: The phone's error as Z-API reported it: it quotes a phone, which the page must mask.
PHONE_ERROR = "session of 5511987654321 lost"
PHONE = "5511987654321"
#: Z-API's words in the dead letters of failed deliveries.
NOT_ON_WHATSAPP = "phone not on WhatsApp"


@dataclass(frozen=True)
class Fleet:
    """What was seeded, for the tests to look for."""

    now: float
    sends_this_minute: int
    sends_in_hour: int
    dead_letters: int


def fleet_settings(**overrides: object) -> dict[str, object]:
    """The seeded fleet's settings, as Settings' keyword arguments."""
    values: dict[str, object] = {
        "zapi_instance_id": DEFAULT_ID,
        "zapi_instance_alias": "main-shop",
        "zapi_rate_limit": 2.5,
        "zapi_instances": json.dumps(INSTANCES),
        "zapi_client_token": "ctok-SECRET-console",
    }
    values.update(overrides)
    return values


def fleet_env(**overrides: str) -> dict[str, str]:
    """The same as environment variables, for a console process."""
    return {name.upper(): str(value) for name, value in {**fleet_settings(), **overrides}.items()}


def seed_fleet(state: redis.Redis, broker_url: str, settings: Settings) -> Fleet:
    """Write the fleet's story into ``state`` (and a queued and a fetched job into the broker
    at ``broker_url``)."""
    now = time.time()
    events = InstanceEvents(state)
    events.record(DEFAULT_ID, connected=False, error=PHONE_ERROR, at=now - 120)
    events.record(SHOP_B_ID, connected=True, error=None, at=now - 3600)
    RateLimiter(state, instance_id=DEFAULT_ID, rate=2.5).penalize(300, rate_limited=True)
    for at in (now, now, now, now - 600, now - 1800):
        key, second = sent_counter(DEFAULT_ID, at)
        state.hincrby(key, str(second), 1)
    for at in (now, now - 600):
        count_refusal(state, DEFAULT_ID, at)
    store = DeadLetterStore.from_settings(state, settings)
    for n, (error_type, error) in enumerate(
        [
            ("DeliveryFailedError", failure_text("M1", NOT_ON_WHATSAPP, "404")),
            ("DeliveryFailedError", failure_text("M2", NOT_ON_WHATSAPP, "404")),
            ("PermanentZapiError", "Z-API answered 400: bad phone"),
        ]
    ):
        store.add(
            DeadLetter(
                job_id=f"console-dead-{n}",
                task="zapi.order_status_update",
                body=unique_body(),
                error_type=error_type,
                error=error,
                attempts=1,
                first_attempt_at=now - 300,
                failed_at=now - 60 * n,
            )
        )
    ZapiQueueBook(state, DEFAULT_ID).record(
        LastPass(at=now - 30, total=7, ours=4, withdrawn=2, partial=False, disconnected=True)
    )
    _queue_jobs(broker_url)
    return Fleet(now=now, sends_this_minute=3, sends_in_hour=5, dead_letters=3)


def _queue_jobs(broker_url: str) -> None:
    """Two jobs of ``default`` in the broker: one queued, one fetched by a worker."""
    producer = Celery(broker=broker_url)
    for _n in range(2):
        producer.send_task("zapi.order_status_update", args=[unique_body()])
    producer.close()
    broker = redis.Redis.from_url(broker_url)
    fetched = broker.rpop(QUEUE)
    assert isinstance(fetched, bytes)
    broker.hset(UNACKED_KEY, "tag-1", json.dumps([json.loads(fetched), "", "celery"]))
    broker.close()
