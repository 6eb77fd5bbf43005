"""``zapi-queue forget --phone P``: erase a customer's records (tasks/state/erasure.py)."""

from __future__ import annotations

import json

import click

from tasks.contract.redaction import mask_phone
from tasks.contract.schemas import PHONE_DIGITS, normalized_phone
from tasks.state.erasure import Erasure, Forgetter
from worker.cli.common import dead_letter_store, fail, reachable, settings_or_exit, state_redis
from worker.cli.main import main

LABELS = {
    "dead_letters": "dead letters",
    "order_snapshots": "order snapshots",
    "delivery_states": "delivery states",
    "idempotency_records": "idempotency records",
    "pacing_keys": "recipient pacing keys",
    "queued_jobs": "queued jobs (removed, not sent)",
    "held_jobs": "jobs held by workers (removed and revoked)",
    "set_aside_items": "set-aside queue items",
}


@main.command("forget")
@click.option("--phone", required=True, help="the customer's phone, as sent (formatting ignored)")
@click.option("--dry-run", is_flag=True, help="count what would be erased, erase nothing")
@click.option("--json", "as_json", is_flag=True, help="print the counts as JSON")
def forget(phone: str, dry_run: bool, as_json: bool) -> None:
    """Erase what zapi-queue keeps about a phone (LGPD/GDPR erasure): its dead letters (full
    and short form, found through the order book), order snapshots, delivery states,
    idempotency records, pacing keys, and its jobs not finished yet.

    \b
    Queued jobs (the queue, its priority lists, retries waiting) are REMOVED, NOT SENT.
    Jobs a worker holds (waiting on an eta or countdown, or running) are removed from
    Redis and revoked: a worker skips a revoked job when its time comes, but one already
    running may still be sent. A job moving between places during the sweep can be
    missed: run forget again to be sure (a second run finding nothing is the proof).
    """
    target = normalized_phone(phone)
    if not PHONE_DIGITS.fullmatch(target):
        fail("--phone must be 10 to 15 digits, DDI DDD NUMBER (e.g. 5511999999999)")
    settings = settings_or_exit()
    instance_ids = {alias: i.instance_id for alias, i in settings.instances().items()}
    forgetter = Forgetter(state_redis(settings), dead_letter_store(), instance_ids=instance_ids)
    broker = reachable(settings.celery_broker_url.get_secret_value())
    erasure = forgetter.forget(target, broker=broker, dry_run=dry_run)
    broker.close()
    revoked = 0 if dry_run else _revoke(erasure)
    counts = erasure.as_dict()
    masked = mask_phone(target)
    if as_json:
        click.echo(json.dumps({"phone": masked, "dry_run": dry_run, **counts, "revoked": revoked}))
        return
    verb = "would erase" if dry_run else "erased"
    parts = [f"{counts[name]} {label}" for name, label in LABELS.items()]
    click.echo(f"{masked}: {verb} " + ", ".join(parts))
    if erasure.unlinked_short_letters:
        click.echo(
            f"{erasure.unlinked_short_letters} short-form dead letters name orders the order "
            "book no longer holds: nothing ties them to a phone, so they were not checked "
            "(they hold no phone; they expire with ZAPI_DEAD_LETTER_TTL)"
        )
    if erasure.queue.held:
        click.echo(
            f"{erasure.queue.held} jobs were held by workers: a job already running may still "
            "be sent; run forget again once they are done"
        )


def _revoke(erasure: Erasure) -> int:
    """Revoke the jobs workers held: their messages are in the workers' memory, not Redis."""
    job_ids = sorted(set(erasure.queue.held_ids))
    if not job_ids:
        return 0
    from worker.celery_app import app

    app.control.revoke(job_ids)
    return len(job_ids)
