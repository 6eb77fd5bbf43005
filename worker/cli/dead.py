"""``zapi-queue dead``: jobs that failed for good, kept for a look, a replay or a purge."""

from __future__ import annotations

import functools
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import click

from tasks.contract.endpoints import TASK_NAMES
from tasks.contract.redaction import mask_phone, masked_body
from tasks.dead_letters import Filters, refusal, replay
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from worker.cli.common import dead_letter_store, fail, printable, when
from worker.cli.main import main
from worker.replays import sender


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
            fail("name job ids, or use --all, or a filter (--task, --error-type, --contains)")
        if not self.job_ids:
            return self.filters.apply(store)
        found = [store.get(job_id) for job_id in self.job_ids]
        missing = [j for j, letter in zip(self.job_ids, found, strict=True) if letter is None]
        if missing:
            fail("no dead letter with id " + ", ".join(missing) + " (see zapi-queue dead list)")
        return self.filters.apply(letter for letter in found if letter is not None)


def filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add --task, --error-type and --contains, handed to ``command`` as ``filters``."""

    @functools.wraps(command)
    def run(
        *args: Any,
        task: str | None,
        error_type: str | None,
        contains: str | None,
        instance: str | None,
        **kw: Any,
    ) -> None:
        command(*args, filters=Filters(task, error_type, contains, instance), **kw)

    run = click.option("--instance", help="only jobs of this Z-API instance alias")(run)
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


@main.group()
def dead() -> None:
    """Jobs that failed for good, kept with their body and error for replay."""


#: Letters read per page by ``dead list``: one page answers the default --limit.
LIST_PAGE = 100


@dead.command("list")
@filter_options
@click.option("--limit", default=50, show_default=True, help="at most this many rows")
@click.option("--json", "as_json", is_flag=True, help="one JSON record per line")
@click.option("--show-phones", is_flag=True, help="print phone numbers in full")
def dead_list(filters: Filters, limit: int, as_json: bool, show_phones: bool) -> None:
    """List dead letters, oldest first (phones masked unless --show-phones).

    Reads the store a page at a time and stops at --limit matches, so a long list costs no
    more than the rows shown; the summary gives the store's totals, not the number of matches
    (that would need reading every letter).
    """
    store = dead_letter_store()
    letters = filters.apply(itertools.chain.from_iterable(store.pages(LIST_PAGE)))
    shown = 0
    for letter in itertools.islice(letters, max(limit, 0)):
        if as_json:
            click.echo(json.dumps(_record(letter, show_phones), ensure_ascii=False))
        else:
            click.echo(_row(letter, show_phones))
        shown += 1
    if not as_json:
        click.echo(
            f"{shown} shown; {store.count()} dead letters in all, "
            f"{store.dropped()} dropped by the cap"
        )


def _record(letter: DeadLetter, show_phones: bool) -> dict[str, Any]:
    """The letter as JSON data, its body's phone masked unless ``show_phones``, its PIX key
    masked always (a replay reads the stored letter, not this)."""
    record: dict[str, Any] = json.loads(letter.to_json())
    if "body" in record:
        record["body"] = masked_body(record["body"], show_phone=show_phones)
    return record


def _row(letter: DeadLetter, show_phones: bool) -> str:
    phone = letter.body.get("phone") if isinstance(letter.body, dict) else None
    shown = str(phone) if show_phones and phone is not None else mask_phone(phone)
    return (
        f"{printable(letter.job_id)}  {when(letter.failed_at)}  {letter.task}  {shown}  "
        f"attempts={letter.attempts}  ambiguous={letter.ambiguous_attempts}  "
        f"{letter.error_type}: {letter.error[:120]}"
    )


@dead.command("show")
@click.argument("job_id")
@click.option("--show-phones", is_flag=True, help="print the phone number in full")
def dead_show(job_id: str, show_phones: bool) -> None:
    """Print one dead letter in full, body included (its phone masked unless --show-phones,
    a PIX key masked always)."""
    letter = dead_letter_store().get(job_id)
    if letter is None:
        fail(f"no dead letter with id {job_id} (see zapi-queue dead list)")
    record = _record(letter, show_phones)
    record["first_attempt_at"] = when(letter.first_attempt_at)
    record["failed_at"] = when(letter.failed_at)
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@dead.command("replay")
@selection_options
@click.option("--dry-run", is_flag=True, help="say what would be replayed, enqueue nothing")
@click.option(
    "--force",
    is_flag=True,
    help="also replay letters with sends of unknown outcome (they may be sent twice)",
)
@click.option(
    "--as-task",
    type=click.Choice(sorted(TASK_NAMES.values())),
    help="replay under this task name (a letter kept as UnknownTaskError: a mistyped name)",
)
def dead_replay(selection: Selection, dry_run: bool, force: bool, as_task: str | None) -> None:
    """Enqueue dead letters again as new jobs (same task, body and idempotency key).

    A letter with a send of unknown outcome (a timeout after the request left) may already
    have reached the customer: it is refused, named, unless --force. Exits 1 if any was.
    """
    store = dead_letter_store()
    letters = selection.resolve(store)
    if as_task is not None:
        letters = (replace(letter, task=as_task) for letter in letters)
    send = None if dry_run else sender()
    replayed = refused = 0
    for letter in letters:
        reason = None if force else refusal(letter)
        if reason is not None:
            click.echo(reason, err=True)
            refused += 1
        elif send is None:
            click.echo(f"would replay {letter.job_id} ({letter.task})")
            replayed += 1
        else:
            click.echo(f"replayed {letter.job_id} as {replay(letter, store, send, force=True)}")
            replayed += 1
    click.echo(f"{replayed} dead letters {'would be replayed' if dry_run else 'replayed'}")
    if refused:
        click.echo(f"{refused} dead letters refused: replay them with --force", err=True)
        sys.exit(1)


@dead.command("purge")
@selection_options
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def dead_purge(selection: Selection, yes: bool) -> None:
    """Delete dead letters for good."""
    store = dead_letter_store()
    job_ids = [letter.job_id for letter in selection.resolve(store)]
    if job_ids and not yes:
        click.confirm(f"delete {len(job_ids)} dead letters for good?", abort=True)
    removed = store.remove(job_ids)
    click.echo(f"{removed} dead letters purged")
