"""Every Redis key zapi-queue writes, and those kombu and Celery write for it; what bounds each.

Redis runs with ``maxmemory-policy noeviction`` (an evicting Redis would drop queued jobs), so
nothing but these bounds keeps it from filling: every key has a TTL, or a cap that names who keeps
it (``Cap``). The modules take their key names from here (arq's ``constants.py`` is the model);
their docstrings say what the keys hold. ``tests/test_key_scan.py`` runs a realistic workload and
fails on any key this registry does not name, or that has neither a TTL nor a cap (or exceeds a
numeric cap); :func:`data_kept_table` renders the README's "data kept" table from :data:`KEYS`.

``{instance}`` is a Z-API instance id (hex, no ``:``); ids inside key names are escaped
(tasks/contract/delivery_record.py ``key_part``). ``python -m tasks.state.keys`` prints the table.
"""

from __future__ import annotations

import sys

# Orders (``{instance}:{orderRequestId}:line|jobs|state|story``: tasks/state/orders.py, book.py,
# history.py), jobs' histories and delivery records (tasks/state/deliveries.py): producers write
# lines and first steps and read deliveries, so these prefixes live in tasks/contract/, which a
# producer installs without the worker. The broker's keys (kombu's, reliable fetch's) are named
# in tasks/state/broker_keys.py; their names are taken from here like every other.
from tasks.contract.delivery_record import DELIVERY_PREFIX as DELIVERY_PREFIX
from tasks.contract.ordering import HISTORY_PREFIX as HISTORY_PREFIX
from tasks.contract.ordering import ORDER_KEY_PREFIX as ORDER_KEY_PREFIX
from tasks.contract.ordering import ORDER_PREFIX as ORDER_PREFIX
from tasks.state.broker_keys import BINDING_DEADLINES_KEY as BINDING_DEADLINES_KEY
from tasks.state.broker_keys import BINDING_PERMANENT_PREFIX as BINDING_PERMANENT_PREFIX
from tasks.state.broker_keys import BINDING_PREFIX as BINDING_PREFIX
from tasks.state.broker_keys import BROKER_KEYS
from tasks.state.broker_keys import HOLDERS_KEY as HOLDERS_KEY
from tasks.state.broker_keys import LEASES_KEY as LEASES_KEY
from tasks.state.broker_keys import MAX_TAKE as MAX_TAKE
from tasks.state.broker_keys import OWNED_PREFIX as OWNED_PREFIX
from tasks.state.broker_keys import OWNERS_KEY as OWNERS_KEY
from tasks.state.broker_keys import PRIORITY_SEP as PRIORITY_SEP
from tasks.state.broker_keys import QUEUE as QUEUE
from tasks.state.broker_keys import REJECTED_KEY as REJECTED_KEY
from tasks.state.broker_keys import REJECTED_MAX as REJECTED_MAX
from tasks.state.broker_keys import SOURCES_KEY as SOURCES_KEY
from tasks.state.broker_keys import UNACKED_INDEX_KEY as UNACKED_INDEX_KEY
from tasks.state.broker_keys import UNACKED_KEY as UNACKED_KEY
from tasks.state.broker_keys import UNACKED_MUTEX_KEY as UNACKED_MUTEX_KEY
from tasks.state.key_spec import BODY as _BODY
from tasks.state.key_spec import NONE as _NO
from tasks.state.key_spec import Cap as Cap
from tasks.state.key_spec import Key as Key

#: The prefix of every key zapi-queue itself writes.
PREFIX = "zapi-queue"

# -- The state Redis (ZAPI_STATE_REDIS_URL, else the broker) ----------------------------------
ORDER_MESSAGE_PREFIX = f"{PREFIX}:order-message:"
IDEMPOTENCY_PREFIX = f"{PREFIX}:idem:"
RATE_PREFIX = f"{PREFIX}:rate:"
PAUSE_PREFIX = f"{PREFIX}:pause:"
STRIKES_PREFIX = f"{PREFIX}:strikes:"
PACE_PREFIX = f"{PREFIX}:pace:"
HOLD_PREFIX = f"{PREFIX}:hold:"
SENT_PREFIX = f"{PREFIX}:sent:"
REFUSED_PREFIX = f"{PREFIX}:refused:"
DELIVERY_COUNTS_PREFIX = f"{PREFIX}:delivery-counts:"
DELIVERY_EARLY_PREFIX = f"{PREFIX}:delivery-early:"
DELIVERY_EARLY_AT_PREFIX = f"{PREFIX}:delivery-early-at:"
DEAD_LETTER_PREFIX = f"{PREFIX}:dead:letter:"
DEAD_INDEX_KEY = f"{PREFIX}:dead:index"
DEAD_TRIMMED_KEY = f"{PREFIX}:dead:trimmed"
DEAD_TYPE_PREFIX = f"{PREFIX}:dead:type:"
DEAD_TYPES_KEY = f"{PREFIX}:dead:types"
DEAD_INSTANCE_PREFIX = f"{PREFIX}:dead:instance:"
DEAD_INSTANCES_KEY = f"{PREFIX}:dead:instances"
#: The single hash of releases that kept letters for ever, migrated away (deadletter.py).
DEAD_LEGACY_KEY = f"{PREFIX}:dead"
REPEAT_PREFIX = f"{PREFIX}:repeat:"
SUPERSEDED_PREFIX = f"{PREFIX}:superseded:"
WEBHOOK_COUNTS_KEY = f"{PREFIX}:webhook:counts"
INSTANCE_PREFIX = f"{PREFIX}:instance:"
STATUS_POLL_PREFIX = f"{PREFIX}:status-poll:"
RECONCILE_PREFIX = f"{PREFIX}:reconcile:"
RECONCILE_TURN_PREFIX = f"{PREFIX}:reconcile-turn:"
RECONCILE_WANTED_PREFIX = f"{PREFIX}:reconcile-wanted:"
CONSOLE_AUDIT_KEY = f"{PREFIX}:console:audit"
SEND_SECONDS_PREFIX = f"{PREFIX}:send-seconds:"
#: In every Redis zapi-queue uses (worker/redis_marker.py).
MARKER_KEY = f"{PREFIX}:marker"

# -- Fixed bounds (the settings' are in config/settings.py) -----------------------------------
#: An hour and two minutes: the console's chart of the last hour's sends reads them.
SENT_TTL = 3720
SENT_MAX_FIELDS = 60
#: Ten minutes without a send of the instance: the exporter falls back to its setting.
SEND_SECONDS_TTL = 600
DELIVERY_COUNTS_TTL = 30 * 86_400
DELIVERY_COUNTS_MAX_FIELDS = 7
DELIVERY_EARLY_TTL = 300
DELIVERY_EARLY_MAX = 10_000
DEAD_MAX_TYPES = 50
DEAD_MAX_INSTANCES = 1000
WEBHOOK_COUNTS_TTL = 30 * 86_400
WEBHOOK_MAX_FIELDS = 200
INSTANCE_TTL = 30 * 86_400
RECONCILE_TTL = 30 * 86_400
MARKER_TTL = 30 * 86_400
SUPERSEDED_MAX = 100
HISTORY_MAX = 64
STORY_MAX = 200
AUDIT_MAX = 1000
AUDIT_TTL = 90 * 86_400


# -- The result backend: Celery's -----------------------------------------------------------
RESULT_PREFIX = "celery-task-meta-"


_ORDERS = "order lines and last delivered state"
_BOOK = "order snapshots (order book)"
_IDEM = "idempotency records"
_DEAD = "dead letters"
_LETTERS = Cap("ZAPI_DEAD_LETTER_MAX letters (100,000), the oldest trimmed at each add")
_DEAD_TTL = "ZAPI_DEAD_LETTER_TTL"
_WITH_LETTERS = "with its newest letter"
_RATE = "rate schedule, pauses, holds"
_COUNTS = "counts (webhook callbacks, delivery states), instance events"
_EARLY = Cap("the oldest evicted first", DELIVERY_EARLY_MAX)
_DELIVERY = "delivery states"


def _order_keys(prefix: str, named: str, state_holds: str) -> tuple[Key, ...]:
    """An order's line, jobs and state, named by ``orderRequestId`` or by the shop's key; and
    its story (its jobs for the console: tasks/state/history.py)."""
    base = f"{prefix}{{instance}}:{{{named}}}"
    kept, setting = "90 days after the order's last update", "ZAPI_ORDER_TTL"
    story = Cap("the newest jobs kept", STORY_MAX)
    return (
        Key(f"{base}:line", _ORDERS, "none: job ids", kept, setting),
        Key(f"{base}:jobs", _ORDERS, "none: job ids, times", kept, setting),
        Key(f"{base}:state", f"{_BOOK}; {_ORDERS}", state_holds, kept, setting),
        Key(
            f"{base}:story", "order stories for the console", "none: job ids", kept, setting, story
        ),
    )


#: Every key, exact names first (a key's entry is the first that matches it).
KEYS: tuple[Key, ...] = (
    # -- dead letters (tasks/state/deadletter.py)
    Key(DEAD_INDEX_KEY, _DEAD, "job ids", _WITH_LETTERS, _DEAD_TTL, _LETTERS),
    Key(
        DEAD_TYPES_KEY,
        _DEAD,
        _NO,
        _WITH_LETTERS,
        _DEAD_TTL,
        Cap(f"{DEAD_MAX_TYPES} classes, then other", DEAD_MAX_TYPES + 1),
    ),
    Key(
        DEAD_INSTANCES_KEY,
        _DEAD,
        _NO,
        _WITH_LETTERS,
        _DEAD_TTL,
        Cap(f"{DEAD_MAX_INSTANCES} aliases, then (other)", DEAD_MAX_INSTANCES + 1),
    ),
    Key(DEAD_TRIMMED_KEY, _DEAD, _NO, "always", cap=Cap("one integer", 1), expires=False),
    Key(
        DEAD_LEGACY_KEY,
        _DEAD,
        _BODY,
        "until each process' first dead-letter command moves it away",
        cap=Cap("an older release's letters, migrated and deleted"),
        expires=False,
    ),
    Key(f"{DEAD_LETTER_PREFIX}{{job}}", _DEAD, _BODY, "30 days", _DEAD_TTL, _LETTERS),
    Key(f"{DEAD_TYPE_PREFIX}{{type}}", _DEAD, "job ids", _WITH_LETTERS, _DEAD_TTL, _LETTERS),
    Key(f"{DEAD_INSTANCE_PREFIX}{{alias}}", _DEAD, "job ids", _WITH_LETTERS, _DEAD_TTL, _LETTERS),
    # -- counts and the marker
    Key(
        WEBHOOK_COUNTS_KEY,
        _COUNTS,
        _NO,
        "30 days after the last callback",
        cap=Cap(f"{WEBHOOK_MAX_FIELDS} fields, then one `<outcome>:?` per outcome", 208),
    ),
    Key(MARKER_KEY, "data-loss marker", _NO, "30 days, renewed by every worker", redis="every"),
    # -- the console's audit log (tasks/state/audit.py)
    Key(
        CONSOLE_AUDIT_KEY,
        "the console's actions on dead letters",
        "operators' names; filters, digit runs masked",
        "90 days after the last action",
        cap=Cap("the newest entries", AUDIT_MAX),
    ),
    # -- orders (tasks/state/orders.py, book.py)
    *_order_keys(
        ORDER_PREFIX, "order", "the snapshot: phone, products, amounts, the order message's ids"
    ),
    *_order_keys(
        ORDER_KEY_PREFIX,
        "order_key",
        "the order message's ids (messageId, zaapId): the link to the order's snapshot",
    ),
    Key(
        f"{ORDER_MESSAGE_PREFIX}{{instance}}:{{message}}",
        _BOOK,
        "an order id",
        "90 days",
        "ZAPI_ORDER_TTL",
    ),
    # -- idempotency (tasks/state/idempotency.py)
    Key(
        f"{IDEMPOTENCY_PREFIX}{{instance}}:{{key}}:reply",
        _IDEM,
        "none: the reply ids, the job that delivered it, when",
        "7 days",
        "ZAPI_IDEMPOTENCY_TTL",
    ),
    Key(
        f"{IDEMPOTENCY_PREFIX}{{instance}}:{{key}}:sent",
        _IDEM,
        "none: execution ids, counts",
        "7 days",
        "ZAPI_IDEMPOTENCY_TTL",
    ),
    Key(
        f"{IDEMPOTENCY_PREFIX}{{instance}}:{{key}}:claim",
        _IDEM,
        "none: an execution id",
        "a lease: the slot wait, then one request's deadline",
        "ZAPI_RATE_MAX_WAIT, ZAPI_TIMEOUT",
    ),
    # -- the send rate (tasks/state/ratelimit.py, sends.py)
    Key(f"{RATE_PREFIX}{{instance}}", _RATE, _NO, "until its last slot, + 1 s", "ZAPI_RATE_LIMIT"),
    Key(f"{PAUSE_PREFIX}{{instance}}", _RATE, _NO, "the pause, + 1 s", "ZAPI_RETRY_BACKOFF_MAX"),
    Key(
        f"{STRIKES_PREFIX}{{instance}}", _RATE, _NO, "twice the pause, + 1 s", "ZAPI_RETRY_BACKOFF"
    ),
    Key(
        f"{HOLD_PREFIX}{{instance}}",
        _RATE,
        _NO,
        "while the phone is disconnected, at most ZAPI_DISCONNECTED_HOLD",
        "ZAPI_DISCONNECTED_HOLD",
    ),
    Key(
        f"{PACE_PREFIX}{{instance}}:{{phone}}",
        "recipient pacing",
        "the phone, in the key's name",
        "ZAPI_RECIPIENT_INTERVAL seconds, + 1 s",
        "ZAPI_RECIPIENT_INTERVAL",
    ),
    Key(
        f"{SENT_PREFIX}{{instance}}:{{minute}}",
        "sends per second, for health and the console's chart",
        _NO,
        f"{SENT_TTL} s after its last count",
        cap=Cap("a field per second", SENT_MAX_FIELDS),
    ),
    Key(
        f"{REFUSED_PREFIX}{{instance}}:{{minute}}",
        "429s per second, for the console's chart",
        _NO,
        f"{SENT_TTL} s after its last count",
        cap=Cap("a field per second", SENT_MAX_FIELDS),
    ),
    Key(
        f"{SEND_SECONDS_PREFIX}{{instance}}",
        "the recent mean send time, for the scaling metric (tasks/state/send_times.py)",
        _NO,
        f"{SEND_SECONDS_TTL} s after the last send",
    ),
    # -- deliveries (tasks/state/deliveries.py)
    Key(
        f"{DELIVERY_PREFIX}{{instance}}:{{message}}",
        _DELIVERY,
        "message ids, state, Z-API's error; the short update (order id, status, message text) "
        "until the message reached the phone",
        "7 days after the last callback",
        "ZAPI_DELIVERY_TTL",
    ),
    Key(
        f"{DELIVERY_COUNTS_PREFIX}{{instance}}",
        _COUNTS,
        _NO,
        "30 days after the last change",
        cap=Cap("a field per state", DELIVERY_COUNTS_MAX_FIELDS),
    ),
    Key(
        f"{DELIVERY_EARLY_PREFIX}{{instance}}",
        _DELIVERY,
        "message ids, states",
        f"{DELIVERY_EARLY_TTL} s after the last early callback",
        cap=_EARLY,
    ),
    Key(
        f"{DELIVERY_EARLY_AT_PREFIX}{{instance}}",
        _DELIVERY,
        "message ids",
        f"{DELIVERY_EARLY_TTL} s after the last early callback",
        cap=_EARLY,
    ),
    # -- repeats (tasks/state/repeats.py), instances (tasks/state/instances.py)
    Key(
        f"{REPEAT_PREFIX}{{job}}",
        "repeats noted for `status`",
        "none: job ids and a time",
        "as long as results",
        "CELERY_RESULT_EXPIRES",
    ),
    Key(
        f"{HISTORY_PREFIX}{{job}}",
        "job steps for the console",
        "none: job and Z-API ids, states, times, redacted errors",
        "as long as results",
        "CELERY_RESULT_EXPIRES",
        Cap("the newest kept", HISTORY_MAX),
    ),
    Key(
        f"{SUPERSEDED_PREFIX}{{job}}",
        "superseded jobs noted for `status`",
        "none: job ids, states, times",
        "as long as results",
        "CELERY_RESULT_EXPIRES",
        Cap("the newest kept", SUPERSEDED_MAX),
    ),
    Key(f"{INSTANCE_PREFIX}{{instance}}", _COUNTS, _NO, "30 days after the last event"),
    Key(
        f"{STATUS_POLL_PREFIX}{{instance}}",
        "instance events",
        "none: a worker's host and pid",
        "one poll interval",
        "ZAPI_STATUS_POLL_INTERVAL",
    ),
    # -- reconciling Z-API's own queue (tasks/state/zapi_queue.py)
    Key(f"{RECONCILE_PREFIX}{{instance}}", _COUNTS, _NO, "30 days after the last pass"),
    Key(
        f"{RECONCILE_TURN_PREFIX}{{instance}}",
        "instance events",
        "none: a worker's host and pid",
        "one pass, 120 s at most",
    ),
    Key(f"{RECONCILE_WANTED_PREFIX}{{instance}}", "instance events", _NO, "60 s"),
    *BROKER_KEYS,
    # -- the result backend: Celery's
    Key(
        f"{RESULT_PREFIX}{{job}}",
        "job results (result backend)",
        "none: Z-API's reply ids, or the error text",
        "7 days",
        "CELERY_RESULT_EXPIRES",
        redis="results",
        owner="celery",
    ),
)


def registered(key: str) -> Key | None:
    """The registry's entry for a key name, or None when no entry names it."""
    return next((entry for entry in KEYS if entry.matches(key)), None)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def data_kept_table() -> str:
    """The README's "data kept" table, one row per key: the key, what it is, the personal data
    in it, how long it is kept (or what caps it) and the setting behind that."""
    rows = [
        "| key | what | personal data | kept | bound | setting |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in KEYS:
        shown = entry.pattern.replace(PRIORITY_SEP, "\\x06\\x16")
        bound = "TTL" if entry.expires else "no TTL"
        if entry.cap is not None:
            most = f"at most {entry.cap.most:,}: " if entry.cap.most is not None else ""
            bound += f"; cap: {most}{entry.cap.kept_by}"
        owner = "" if entry.owner == "zapi-queue" else f" ({entry.owner}'s)"
        cells = [f"`{shown}`{owner}", entry.data, entry.personal, entry.kept, bound, entry.setting]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(data_kept_table())
