"""``zapi-queue``: the command line (enqueue, job status, health, dead letters).

Every command reads the same settings as the worker (environment variables or ``.env``) and
prints no secret: URLs are shown with their password masked.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import click
import redis

from config import ConfigurationError, Settings, get_settings
from tasks.endpoints import Endpoint
from tasks.errors import InvalidBodyError
from tasks.producer import Producer
from tasks.redaction import mask_phone, redact
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.store import connect
from worker.fetch_scripts import REJECTED_KEY
from worker.redis_checks import maxmemory_policy, policy_problem, redis_roles


def _fail(message: str) -> NoReturn:
    click.echo(f"zapi-queue: {message}", err=True)
    sys.exit(2)


def _settings() -> Settings:
    """The worker's settings, or a one-line error naming the bad variable."""
    try:
        return get_settings()
    except ConfigurationError as exc:
        _fail(str(exc))


def _dead_letters() -> DeadLetterStore:
    settings = _settings()
    url = settings.state_redis_url
    client = connect(url, retries=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _fail(f"cannot reach Redis at {redact(url)}: {type(exc).__name__}")
    return DeadLetterStore.from_settings(client, settings)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters shared by list, replay and purge."""

    task: str | None = None
    error_type: str | None = None
    contains: str | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.task, self.error_type, self.contains))

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.task is None or letter.task == self.task)
            and (self.error_type is None or letter.error_type == self.error_type)
            and (self.contains is None or self.contains.lower() in letter.error.lower())
        )

    def apply(self, letters: Iterable[DeadLetter]) -> Iterator[DeadLetter]:
        """The matching letters, lazily: a caller that stops early reads no further."""
        return (letter for letter in letters if self.matches(letter))


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on: named ids, --all, or filters."""

    job_ids: tuple[str, ...]
    every: bool
    filters: Filters

    def resolve(self, store: DeadLetterStore) -> Iterator[DeadLetter]:
        """The selected letters. Named ids are all checked first (one unknown id stops the
        command before it acts); --all and filters read the store page by page as the caller
        consumes them, so removing each letter as it is handled is safe."""
        if not (self.job_ids or self.every or self.filters.any):
            _fail("name job ids, or use --all, or a filter (--task, --error-type, --contains)")
        if not self.job_ids:
            return self.filters.apply(store)
        found = [store.get(job_id) for job_id in self.job_ids]
        missing = [j for j, letter in zip(self.job_ids, found, strict=True) if letter is None]
        if missing:
            _fail("no dead letter with id " + ", ".join(missing))
        return self.filters.apply(letter for letter in found if letter is not None)


def filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add --task, --error-type and --contains, handed to ``command`` as ``filters``."""

    @functools.wraps(command)
    def run(
        *args: Any, task: str | None, error_type: str | None, contains: str | None, **kw: Any
    ) -> None:
        command(*args, filters=Filters(task, error_type, contains), **kw)

    run = click.option("--contains", help="only errors whose text contains this")(run)
    run = click.option("--error-type", help="only this error, e.g. AttemptsExhaustedError")(run)
    return click.option("--task", help="only jobs of this task, e.g. zapi.order_status_update")(run)


def selection_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add JOB_IDS, --all and the filters, handed to ``command`` as ``selection``."""

    @functools.wraps(command)
    def run(*args: Any, job_ids: tuple[str, ...], every: bool, filters: Filters, **kw: Any) -> None:
        command(*args, selection=Selection(job_ids, every, filters), **kw)

    decorated = filter_options(run)
    decorated = click.option("--all", "every", is_flag=True, help="every dead letter")(decorated)
    return click.argument("job_ids", nargs=-1)(decorated)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate zapi-queue: enqueue updates, look up a job, inspect and replay dead letters.

    Settings come from the environment (CELERY_BROKER_URL, ...), as for the worker.
    """


@main.group()
def dead() -> None:
    """Jobs that failed for good, kept with their body and error for replay."""


#: Letters read per page by ``dead list``: one page answers the default --limit.
LIST_PAGE = 100


@dead.command("list")
@filter_options
@click.option("--limit", default=50, show_default=True, help="at most this many rows")
@click.option("--json", "as_json", is_flag=True, help="one JSON record per line")
def dead_list(filters: Filters, limit: int, as_json: bool) -> None:
    """List dead letters, oldest first (phones masked).

    Reads the store a page at a time and stops at --limit matches, so a long list costs no
    more than the rows shown; the summary gives the store's totals, not the number of matches
    (that would need reading every letter).
    """
    store = _dead_letters()
    letters = filters.apply(itertools.chain.from_iterable(store.pages(LIST_PAGE)))
    shown = 0
    for letter in itertools.islice(letters, max(limit, 0)):
        click.echo(letter.to_json() if as_json else _row(letter))
        shown += 1
    if not as_json:
        click.echo(
            f"{shown} shown; {store.count()} dead letters in all, "
            f"{store.dropped()} dropped by the cap"
        )


def _row(letter: DeadLetter) -> str:
    phone = letter.body.get("phone") if isinstance(letter.body, dict) else None
    return (
        f"{letter.job_id}  {_when(letter.failed_at)}  {letter.task}  {mask_phone(phone)}  "
        f"attempts={letter.attempts}  ambiguous={letter.ambiguous_attempts}  "
        f"{letter.error_type}: {letter.error[:120]}"
    )


@dead.command("show")
@click.argument("job_id")
def dead_show(job_id: str) -> None:
    """Print one dead letter in full (body included)."""
    letter = _dead_letters().get(job_id)
    if letter is None:
        _fail(f"no dead letter with id {job_id}")
    record = json.loads(letter.to_json())
    record["first_attempt_at"] = _when(letter.first_attempt_at)
    record["failed_at"] = _when(letter.failed_at)
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@dead.command("replay")
@selection_options
@click.option("--dry-run", is_flag=True, help="say what would be replayed, enqueue nothing")
@click.option(
    "--force",
    is_flag=True,
    help="also replay letters with sends of unknown outcome (they may be sent twice)",
)
def dead_replay(selection: Selection, dry_run: bool, force: bool) -> None:
    """Enqueue dead letters again as new jobs (same task, body and idempotency key).

    A letter with a send of unknown outcome (a timeout after the request left) may already
    have reached the customer: it is refused, named, unless --force. Exits 1 if any was.
    """
    store = _dead_letters()
    letters = selection.resolve(store)
    send = None if dry_run else _sender()
    replayed = refused = 0
    for letter in letters:
        if letter.ambiguous_attempts and not force:
            click.echo(_refusal(letter), err=True)
            refused += 1
        elif send is None:
            click.echo(f"would replay {letter.job_id} ({letter.task})")
            replayed += 1
        else:
            click.echo(f"replayed {letter.job_id} as {send(letter)}")
            store.remove([letter.job_id])
            replayed += 1
    click.echo(f"{replayed} dead letters {'would be replayed' if dry_run else 'replayed'}")
    if refused:
        click.echo(f"{refused} dead letters refused: replay them with --force", err=True)
        sys.exit(1)


def _sender() -> Callable[[DeadLetter], str]:
    """Enqueue a letter's job again; returns the new job id."""
    from worker.celery_app import app

    def send(letter: DeadLetter) -> str:
        return str(app.send_task(letter.task, args=[letter.body], kwargs=letter.kwargs).id)

    return send


def _refusal(letter: DeadLetter) -> str:
    return (
        f"refused {letter.job_id}: {letter.ambiguous_attempts} send(s) of unknown outcome "
        "(a timeout or reset after the request left): it may already have reached the "
        "customer: replaying may send it twice; use --force"
    )


@dead.command("purge")
@selection_options
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def dead_purge(selection: Selection, yes: bool) -> None:
    """Delete dead letters for good."""
    store = _dead_letters()
    job_ids = [letter.job_id for letter in selection.resolve(store)]
    if job_ids and not yes:
        click.confirm(f"delete {len(job_ids)} dead letters for good?", abort=True)
    removed = store.remove(job_ids)
    click.echo(f"{removed} dead letters purged")


def _producer() -> Producer:
    settings = _settings()
    return Producer(
        broker_url=settings.celery_broker_url.get_secret_value(),
        result_backend=settings.celery_result_backend.get_secret_value(),
    )


ENDPOINTS = {"status": Endpoint.ORDER_STATUS_UPDATE, "payment": Endpoint.ORDER_PAYMENT_UPDATE}
CHUNK = 200


@main.command("enqueue")
@click.argument("kind", type=click.Choice(sorted(ENDPOINTS)))
@click.argument("body_file", type=click.File("r"), default="-", required=False)
@click.option(
    "--file",
    "jsonl",
    type=click.File("r"),
    help="bulk: one JSON body per line (JSON Lines); '-' reads stdin",
)
@click.option("--idempotency-key", help="single job only: a repeat with this key is not sent")
@click.option("--wait", type=float, help="single job only: wait this many seconds for the reply")
def enqueue(
    kind: str,
    body_file: TextIO,
    jsonl: TextIO | None,
    idempotency_key: str | None,
    wait: float | None,
) -> None:
    """Validate and enqueue an order status or payment update.

    \b
    One body from a JSON file or stdin:
      zapi-queue enqueue status update.json
      echo '{...}' | zapi-queue enqueue payment --wait 30
    Many, one per line, with a progress bar and a summary:
      zapi-queue enqueue status --file updates.jsonl

    Exits 1 when a body is refused (each refusal names its line, field and rule).
    """
    endpoint = ENDPOINTS[kind]
    producer = _producer()
    try:
        if jsonl is not None:
            _enqueue_lines(producer, endpoint, jsonl)
            return
        try:
            body = json.load(body_file)
        except ValueError as exc:
            _fail(f"not valid JSON: {exc}")
        try:
            job_id = producer.enqueue(endpoint, body, idempotency_key=idempotency_key)
        except InvalidBodyError as exc:
            click.echo(f"rejected: {exc}", err=True)
            sys.exit(1)
        click.echo(job_id)
        if wait is not None:
            click.echo(json.dumps(producer.get_result(job_id, timeout=wait)))
    finally:
        producer.close()


def _enqueue_lines(producer: Producer, endpoint: Endpoint, lines: TextIO) -> None:
    rejected: list[tuple[int, str]] = []
    pending: list[tuple[int, Any]] = []
    enqueued = 0

    def flush() -> None:
        nonlocal enqueued
        outcome = producer.enqueue_many(endpoint, [body for _, body in pending])
        enqueued += len(outcome.job_ids)
        rejected.extend((pending[index][0], reason) for index, reason in outcome.rejected)
        pending.clear()

    numbered = [(n, line) for n, line in enumerate(lines.read().splitlines(), 1) if line.strip()]
    with click.progressbar(numbered, label="enqueueing", file=sys.stderr) as bar:
        for number, line in bar:
            try:
                pending.append((number, json.loads(line)))
            except ValueError as exc:
                rejected.append((number, f"not valid JSON: {exc}"))
            if len(pending) >= CHUNK:
                flush()
        if pending:
            flush()
    for number, reason in sorted(rejected):
        click.echo(f"line {number}: {reason}", err=True)
    click.echo(f"enqueued {enqueued}, rejected {len(rejected)}")
    if rejected:
        sys.exit(1)


@main.command("health")
@click.option("--timeout", default=3.0, show_default=True, help="seconds to wait for workers")
@click.option("--min-workers", default=1, show_default=True, help="fewer answering is unhealthy")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def health(timeout: float, min_workers: int, as_json: bool) -> None:
    """Broker reachable, its eviction policy, workers answering, queue depth, dead letters,
    items set aside. Exit 1 if unhealthy.

    Usable as a container or monitoring healthcheck.
    """
    settings = _settings()
    broker_url = settings.celery_broker_url.get_secret_value()
    report: dict[str, Any] = {"broker": redact(broker_url), "broker_reachable": False}
    problems: list[str] = []
    _check_broker(connect(broker_url, retries=1), report, problems)
    _check_state(settings, report, problems)
    if report["broker_reachable"]:
        from worker.celery_app import app

        replies = app.control.ping(timeout=timeout) or []
        report["workers"] = sorted(name for reply in replies for name in reply)
        if len(report["workers"]) < min_workers:
            problems.append(f"{len(report['workers'])} workers answering, {min_workers} wanted")
    report["healthy"] = not problems
    report["problems"] = problems
    if as_json:
        click.echo(json.dumps(report))
    else:
        for name, value in report.items():
            click.echo(f"{name}: {value}")
    if problems:
        sys.exit(1)


def _check_broker(client: redis.Redis, report: dict[str, Any], problems: list[str]) -> None:
    """Reachable, queue depths, and the eviction policy: an evicting broker loses queued jobs."""
    try:
        client.ping()
        report["broker_reachable"] = True
        report["maxmemory_policy"] = maxmemory_policy(client)
        report["queue_depth"] = int(client.llen("celery"))
        # Items found in the queue that were not Celery messages (worker/transport.py).
        report["set_aside_items"] = int(client.llen(REJECTED_KEY))
    except redis.RedisError as exc:
        problems.append(f"broker unreachable ({type(exc).__name__})")
        return
    finally:
        client.close()
    if problem := policy_problem(report["maxmemory_policy"], "broker Redis"):
        problems.append(problem)


def _check_state(settings: Settings, report: dict[str, Any], problems: list[str]) -> None:
    """Dead letters, and the eviction policy of the state Redis when it is another server."""
    url = settings.state_redis_url
    client = connect(url, retries=1)
    try:
        if "state" in redis_roles(settings):
            report["state_redis"] = redact(url)
            report["state_maxmemory_policy"] = maxmemory_policy(client)
            if problem := policy_problem(report["state_maxmemory_policy"], "state Redis"):
                problems.append(problem)
        store = DeadLetterStore.from_settings(client, settings)
        report["dead_letters"] = store.count()
        report["dead_letters_dropped"] = store.dropped()
    except redis.RedisError as exc:
        problems.append(f"dead letters unreadable ({type(exc).__name__})")
    finally:
        client.close()


@main.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the state as JSON")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state and its result (Z-API's reply) or error."""
    from celery.result import AsyncResult

    from worker.celery_app import app

    result: AsyncResult[Any] = AsyncResult(job_id, app=app)
    state = result.state
    outcome: Any = result.result
    record: dict[str, Any] = {"id": job_id, "state": state}
    if isinstance(outcome, BaseException):
        record["error_type"] = type(outcome).__name__
        record["error"] = str(outcome)
    elif outcome is not None:
        record["result"] = outcome
    if state == "PENDING":
        record["note"] = "unknown job, or still queued (results expire after CELERY_RESULT_EXPIRES)"
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    for name, value in record.items():
        click.echo(f"{name}: {json.dumps(value) if isinstance(value, dict) else value}")


if __name__ == "__main__":
    main()
