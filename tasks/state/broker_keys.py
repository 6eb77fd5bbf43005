"""The broker's keys: kombu's own (the queue, its bookkeeping) and reliable fetch's
(worker/fetch_scripts.py), with what bounds each (tasks/state/keys.py registers them all).

Most have no TTL: a queued job must not expire. Each names the cap that keeps it bounded.
"""

from __future__ import annotations

from tasks.state.key_spec import BODY as _BODY
from tasks.state.key_spec import NONE as _NO
from tasks.state.key_spec import Cap, Key

# -- The broker: kombu's keys, and reliable fetch's (worker/fetch_scripts.py) -----------------
#: The queue (a list), and kombu's one list per priority step: ``celery\x06\x16<1-9>``.
QUEUE = "celery"
PRIORITY_SEP = "\x06\x16"
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
UNACKED_MUTEX_KEY = "unacked_mutex"
BINDING_PREFIX = "_kombu.binding."
#: kombu 5.7's: the bindings of queues without an expiry, and the deadlines of those with one.
BINDING_PERMANENT_PREFIX = "_kombu.binding_permanent."
BINDING_DEADLINES_KEY = "_kombu.binding_deadlines"
LEASES_KEY = "_kombu.fetching"
SOURCES_KEY = "_kombu.fetching.sources"
OWNERS_KEY = "_kombu.fetching.owners"
HOLDERS_KEY = "_kombu.fetching.holders"
REJECTED_KEY = "_kombu.fetching.rejected"
REJECTED_MAX = 1000
OWNED_PREFIX = "_kombu.owned."
#: The most messages one fetch moves into a processing list.
MAX_TAKE = 16

_QUEUED = "queued jobs (broker)"
_FETCH = "reliable fetch's bookkeeping (broker)"
_KOMBU = "kombu's bookkeeping (broker)"
_LEASED = Cap("one per live channel's processing list; a sweep forgets expired empty ones")


def _broker(pattern: str, data: str, personal: str, kept: str, cap: Cap, **more: str) -> Key:
    """A broker key without a TTL (reliable fetch's, unless ``owner`` says kombu)."""
    return Key(pattern, data, personal, kept, cap=cap, expires=False, redis="broker", **more)


#: The broker's keys, for the registry.
BROKER_KEYS: tuple[Key, ...] = (
    # -- the broker: kombu's own keys
    _broker(
        QUEUE,
        _QUEUED,
        _BODY,
        "until a worker takes them",
        Cap("the backlog: workers take it (zapi-queue health shows its depth)"),
        owner="kombu",
    ),
    _broker(
        f"{QUEUE}{PRIORITY_SEP}{{priority}}",
        _QUEUED,
        _BODY,
        "until a worker takes them",
        Cap("the backlog of one priority step (1-9)"),
        owner="kombu",
    ),
    _broker(
        UNACKED_KEY,
        _QUEUED,
        _BODY,
        "until the job is acked",
        Cap("jobs in flight: each worker's prefetch, acked or restored"),
        owner="kombu",
    ),
    _broker(
        UNACKED_INDEX_KEY,
        _QUEUED,
        "none: delivery tags",
        "until the job is acked",
        Cap("jobs in flight, as unacked"),
        owner="kombu",
    ),
    Key(
        UNACKED_MUTEX_KEY, _KOMBU, _NO, "unacked_mutex_expire (10 s)", redis="broker", owner="kombu"
    ),
    _broker(
        f"{BINDING_PREFIX}{{exchange}}",
        _KOMBU,
        _NO,
        "always",
        Cap("one member per queue bound to the exchange"),
        owner="kombu",
    ),
    _broker(
        f"{BINDING_PERMANENT_PREFIX}{{exchange}}",
        _KOMBU,
        _NO,
        "always",
        Cap("one member per queue without an expiry bound to the exchange"),
        owner="kombu",
    ),
    _broker(
        BINDING_DEADLINES_KEY,
        _KOMBU,
        _NO,
        "always",
        Cap("one per exchange with expiring queues; kombu sweeps the overdue"),
        owner="kombu",
    ),
    # -- the broker: reliable fetch's (worker/fetch_scripts.py)
    _broker(LEASES_KEY, _FETCH, _NO, "always", _LEASED),
    _broker(SOURCES_KEY, _FETCH, _NO, "always", _LEASED),
    _broker(OWNERS_KEY, _FETCH, _NO, "always", _LEASED),
    _broker(HOLDERS_KEY, _FETCH, _NO, "always", Cap("one per unacked job fetched reliably")),
    _broker(
        REJECTED_KEY,
        _FETCH,
        "items set aside: anything",
        "always",
        Cap("the newest kept", REJECTED_MAX),
    ),
    _broker(
        f"{OWNED_PREFIX}{{channel}}",
        _FETCH,
        _NO,
        "deleted with its channel's list",
        Cap("a channel's unacked jobs"),
    ),
    _broker(
        f"{LEASES_KEY}.{{queue}}.{{channel}}",
        _FETCH,
        _BODY,
        "until claimed",
        Cap("one fetch's messages", MAX_TAKE),
    ),
)
