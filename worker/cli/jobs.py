"""``zapi-queue enqueue`` and ``zapi-queue status``: a producer's commands."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import click

from tasks.contract.endpoints import BY_CLI_KIND, Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.producer import Producer
from tasks.state.repeats import Repeat, RepeatBook
from tasks.state.supersedes import SupersedeBook, Superseded
from worker.cli.bulk import enqueue_lines
from worker.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FINISHED,
    fail,
    one_line,
    printable,
    producer_or_exit,
    reachable,
    settings_or_exit,
    state_redis,
)
from worker.cli.main import main

#: ``zapi-queue enqueue KIND``: the endpoint registry's words.
ENDPOINTS = BY_CLI_KIND


@main.command("enqueue")
@click.argument("kind", type=click.Choice(sorted(ENDPOINTS)))
@click.argument("body_file", type=click.File("r"), default="-", required=False)
@click.option(
    "--file",
    "jsonl",
    type=click.File("r"),
    help="bulk: one JSON body per line (JSON Lines); '-' reads stdin",
)
@click.option(
    "--out",
    type=click.File("w"),
    default="-",
    help="bulk: where each line's job id or refusal goes, as JSON Lines (default stdout)",
)
@click.option("--instance", help="the Z-API instance's alias (ZAPI_INSTANCES; default: default)")
@click.option("--idempotency-key", help="single job only: a repeat with this key is not sent")
@click.option(
    "--order-key",
    help="order, single job only: the shop's own order id, by which its updates name it",
)
@click.option("--wait", type=float, help="single job only: wait this many seconds for the reply")
def enqueue(
    kind: str,
    body_file: TextIO,
    jsonl: TextIO | None,
    out: TextIO,
    instance: str | None,
    idempotency_key: str | None,
    order_key: str | None,
    wait: float | None,
) -> None:
    """Validate and enqueue an order message (order) or an order status or payment update.

    \b
    One body from a JSON file or stdin:
      zapi-queue enqueue order order.json --order-key shop-1042
      zapi-queue enqueue status update.json
      echo '{...}' | zapi-queue enqueue payment --wait 30
    Many, one per line (JSON Lines):
      zapi-queue enqueue status --file updates.jsonl --out jobs.jsonl
    writes {"line": N, "job_id": ...} or {"line": N, "rejected": ...} per line to
    --out, progress (count, rate, ETA) and a summary to stderr; identical refusals
    are told once, with their count and first line numbers.

    Exits 1 when a body is refused (each refusal names its line, field and rule).
    """
    endpoint = ENDPOINTS[kind]
    if order_key is not None and (jsonl is not None or "order_key" not in endpoint.spec.kwargs):
        fail("--order-key names one order message: enqueue order BODY_FILE --order-key KEY")
    producer = producer_or_exit()
    try:
        if jsonl is not None:
            _enqueue_file(producer, endpoint, jsonl, out, instance)
            return
        try:
            body = json.load(body_file)
        except (ValueError, RecursionError) as exc:
            fail(f"not valid JSON: {getattr(exc, 'msg', 'nested too deeply')}; fix the file")
        try:
            job_id = producer.enqueue(
                endpoint,
                body,
                idempotency_key=idempotency_key,
                instance=instance,
                order_key=order_key,
            )
        except InvalidBodyError as exc:
            click.echo(f"rejected: {exc}", err=True)
            sys.exit(1)
        click.echo(job_id)
        if wait is not None:
            _wait_for(producer, job_id, wait)
    finally:
        producer.close()


def _wait_for(producer: Producer, job_id: str, wait: float) -> None:
    """Print the job's reply; a job not finished in time, or failed, is one line on stderr
    (exit 4 with its state, or 1 with its error class and text), never a traceback."""
    from celery.exceptions import TimeoutError as NotFinished
    from celery.result import AsyncResult

    result: AsyncResult[Any] = AsyncResult(job_id, app=producer.app)
    finished = True
    try:
        result.get(timeout=wait, propagate=False)
    except NotFinished:
        finished = False
    finally:
        # Celery keeps a pending result until it is fulfilled; one left at interpreter exit
        # prints a traceback of its own from AsyncResult.__del__.
        backend: Any = result.backend  # the Redis backend's, untyped in celery-types
        backend.remove_pending_result(result)
    state, reply = result.state, result.result
    if not finished:
        fail(
            f"job {job_id} not finished after {wait:g} s (state {state}); "
            f"follow it with zapi-queue status {job_id}",
            EXIT_NOT_FINISHED,
        )
    if isinstance(reply, BaseException) or state != "SUCCESS":
        error = f"{type(reply).__name__}: {reply}" if isinstance(reply, BaseException) else state
        click.echo(f"failed: {one_line(error)}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(reply))


def _enqueue_file(
    producer: Producer, endpoint: Endpoint, source: TextIO, out: TextIO, instance: str | None
) -> None:
    started = time.monotonic()
    report = enqueue_lines(producer, endpoint, source, sys.stderr, instance)
    for record in report.records():
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    for line in report.summary(time.monotonic() - started):
        click.echo(line, err=True)
    if report.rejected:
        sys.exit(1)


@main.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the state as JSON")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state and its result (Z-API's reply) or error, and, for a delivered job,
    its delivery state from Z-API's callbacks.

    \b
    Exit codes: 0 delivered (SUCCESS), 1 failed (FAILURE), 3 unknown or still queued (PENDING),
    4 not finished yet (STARTED, RETRY), 2 a configuration or connection error.
    """
    from celery.result import AsyncResult

    from worker.celery_app import app

    reachable(settings_or_exit().celery_result_backend.get_secret_value()).close()
    result: AsyncResult[Any] = AsyncResult(job_id, app=app)
    state = result.state
    outcome: Any = result.result
    record: dict[str, Any] = {"id": printable(job_id) if not as_json else job_id, "state": state}
    if isinstance(outcome, BaseException):
        record["error_type"] = type(outcome).__name__
        record["error"] = one_line(str(outcome))
    elif outcome is not None:
        record["result"] = outcome
    if state == "PENDING":
        record["note"] = "unknown job, or still queued (results expire after CELERY_RESULT_EXPIRES)"
    if isinstance(outcome, dict) and isinstance(outcome.get("messageId"), str):
        record["delivery"] = _delivery(outcome["messageId"])
        repeat = _repeat(job_id)
        if repeat is not None:
            record["not_sent"] = repeat.as_dict()
            record["note"] = repeat.describe()
    superseded = _superseded(job_id)
    if superseded:
        record["superseded"] = (
            [entry.as_dict() for entry in superseded]
            if as_json
            else ("; ".join(entry.describe() for entry in superseded))
        )
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False))
    else:
        for name, value in record.items():
            click.echo(f"{name}: {json.dumps(value) if isinstance(value, dict) else value}")
    sys.exit(STATUS_EXIT_CODES.get(state, 4))


#: ``zapi-queue status``'s exit code per Celery state (others: 4, not finished yet).
STATUS_EXIT_CODES = {"SUCCESS": 0, "FAILURE": 1, "PENDING": 3}


def _repeat(job_id: str) -> Repeat | None:
    """Whether the job was answered from an idempotency record instead of being sent."""
    settings = settings_or_exit()
    return RepeatBook(state_redis(settings), ttl=settings.celery_result_expires).get(job_id)


def _superseded(job_id: str) -> list[Superseded]:
    """The older updates this job superseded (``ZAPI_SUPERSEDE``), oldest first."""
    settings = settings_or_exit()
    return SupersedeBook(state_redis(settings), ttl=settings.celery_result_expires).of(job_id)


def _delivery(message_id: str) -> dict[str, Any]:
    """What Z-API's callbacks said of the message (``accepted`` until the first one)."""
    from tasks.state.deliveries import DeliveryBook

    settings = settings_or_exit()
    if settings.zapi_instance_id is None:
        return {"state": "unknown", "note": "set ZAPI_INSTANCE_ID to see delivery states"}
    book = DeliveryBook(
        state_redis(settings),
        instance_id=settings.zapi_instance_id,
        ttl=settings.zapi_delivery_ttl,
    )
    found = book.get(message_id)
    if found is None:
        return {"state": "unknown", "note": "no delivery record (expired, or not linked yet)"}
    return found.as_dict()
