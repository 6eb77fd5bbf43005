"""What each worker counts, for Prometheus (``ZAPI_METRICS_PORT``, served by worker/signals.py).

Per process and cumulative, so a fleet's figures are sums over its workers and nothing is
counted twice. Labels are the endpoint, the instance's alias (never its id's token), the outcome
and the like: never a phone, a body or a secret. Fleet-wide gauges (queue depth, dead letters,
workers alive, delivery states) are read from Redis by one exporter (worker/exporter.py).

* ``zapi_queue_attempts_total{endpoint,instance,outcome}``: each job execution's end, as the
  attempt log says it: delivered, retry, refused, gave-up, deferred (a 429), deduplicated (a
  repeat answered from the idempotency record: nothing sent).
* ``zapi_queue_ambiguous_sends_total{endpoint,instance}``: sends whose outcome is unknown (a
  timeout or reset after the request was written): Z-API may have delivered them.
* ``zapi_queue_send_duration_seconds{endpoint,instance}``: each request to Z-API.
* ``zapi_queue_slot_wait_seconds{instance}``: time a job slept for its rate slot in-thread.
* ``zapi_queue_instance_pauses_total{instance,reason}``: pauses of the whole instance asked by
  Z-API (``rate_limited``: a 429; ``retry_after``: a Retry-After on another answer).
* ``zapi_queue_deferrals_total{instance,reason}``: jobs re-scheduled without using an attempt
  (``rate_limit``, ``order_turn``, ``order_not_in_book_yet``, ``redis_unavailable``).
* ``zapi_queue_status_polls_total{instance,outcome}``: ``GET .../status`` polls this worker
  made (``connected``, ``disconnected``, ``failed``: no answer or an error).
* ``zapi_queue_dead_lettered_total{endpoint,instance,error_type}``: jobs that failed for good
  and were kept as dead letters (an invalid body, Z-API's refusal, a spent budget...).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Z-API answers in tens to hundreds of ms; a timeout is seconds.
SEND_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
SLOT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

ATTEMPTS = Counter(
    "zapi_queue_attempts",
    "Job executions by how they ended (the attempt log's outcome).",
    ["endpoint", "instance", "outcome"],
)
AMBIGUOUS_SENDS = Counter(
    "zapi_queue_ambiguous_sends",
    "Sends whose outcome is unknown: Z-API may have delivered them.",
    ["endpoint", "instance"],
)
SEND_DURATION = Histogram(
    "zapi_queue_send_duration_seconds",
    "Duration of each request to Z-API.",
    ["endpoint", "instance"],
    buckets=SEND_BUCKETS,
)
SLOT_WAIT = Histogram(
    "zapi_queue_slot_wait_seconds",
    "Time a job slept in its thread for its rate-limit slot.",
    ["instance"],
    buckets=SLOT_BUCKETS,
)
INSTANCE_PAUSES = Counter(
    "zapi_queue_instance_pauses",
    "Pauses of the whole Z-API instance that Z-API asked for.",
    ["instance", "reason"],
)
DEFERRALS = Counter(
    "zapi_queue_deferrals",
    "Jobs re-scheduled without using an attempt, by reason.",
    ["instance", "reason"],
)
STATUS_POLLS = Counter(
    "zapi_queue_status_polls",
    "Polls of an instance's GET .../status, by what they found.",
    ["instance", "outcome"],
)
QUEUE_RECONCILIATIONS = Counter(
    "zapi_queue_zapi_queue_reconciliations",
    "Passes over an instance's queue at Z-API (tasks/reconcile.py), by outcome: complete, "
    "partial (longer than ZAPI_QUEUE_PAGES pages) or failed (Z-API could not be read).",
    ["instance", "outcome"],
)
QUEUE_WITHDRAWN = Counter(
    "zapi_queue_zapi_queue_withdrawn",
    "Our messages taken out of Z-API's queue before they fired, by reason: superseded (a "
    "newer update of the order and field) or stale (the order showed a later state already).",
    ["instance", "reason"],
)
DEAD_LETTERED = Counter(
    "zapi_queue_dead_lettered",
    "Jobs that failed for good, kept as dead letters, by error class.",
    ["endpoint", "instance", "error_type"],
)
REDIS_DATA_LOST = Counter(
    "zapi_queue_redis_data_lost",
    "Times a worker found a Redis emptied under it (its marker gone: worker/redis_marker.py).",
    ["role"],
)

#: Outcomes that involved a request to Z-API (the others sent nothing).
SENDING_OUTCOMES = frozenset({"delivered", "retry", "refused", "gave-up", "deferred"})


def count_attempt(
    *, endpoint: str, instance: str, outcome: str, duration: float, ambiguous_send: bool
) -> None:
    """One execution's end: its outcome, and its request's duration when it sent one."""
    ATTEMPTS.labels(endpoint, instance, outcome).inc()
    if outcome in SENDING_OUTCOMES:
        SEND_DURATION.labels(endpoint, instance).observe(duration)
    if ambiguous_send:
        AMBIGUOUS_SENDS.labels(endpoint, instance).inc()
