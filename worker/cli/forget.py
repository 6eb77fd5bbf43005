"""``zapi-queue forget --phone P``: erase a customer's records (tasks/state/erasure.py);
``forget --pix-key KEY``: the send-order bodies carrying a PIX key (tasks/state/erasure_pix.py)."""

from __future__ import annotations

import json

import click

from tasks.contract.redaction import mask_phone, mask_pix_key
from tasks.contract.schemas import PHONE_DIGITS, normalized_phone
from tasks.contract.send_order import PIX_KEY_MAX_LENGTH
from tasks.state.erasure import Erasure, Forgetter
from tasks.state.erasure_pix import PixErasure, PixForgetter
from tasks.state.erasure_queues import QueueSweep
from worker.cli.common import dead_letter_store, fail, reachable, settings_or_exit, state_redis
from worker.cli.main import main

LABELS = {
    "dead_letters": "dead letters",
    "order_snapshots": "order snapshots",
    "delivery_states": "delivery states",
    "idempotency_records": "idempotency records",
    "delivery_bodies": "delivery record bodies (PIX key)",
    "pacing_keys": "recipient pacing keys",
    "queued_jobs": "queued jobs (removed, not sent)",
    "held_jobs": "jobs held by workers (removed and revoked)",
    "set_aside_items": "set-aside queue items",
}


@main.command("forget")
@click.option("--phone", help="the customer's phone, as sent (formatting ignored)")
@click.option("--pix-key", help="a PIX key (paymentSettings.pix.key), exactly as sent")
@click.option("--dry-run", is_flag=True, help="count what would be erased, erase nothing")
@click.option("--json", "as_json", is_flag=True, help="print the counts as JSON")
def forget(phone: str | None, pix_key: str | None, dry_run: bool, as_json: bool) -> None:
    """Erase what zapi-queue keeps about a phone (LGPD/GDPR erasure): its dead letters (full
    and short form, found through the order book), order snapshots, delivery states,
    idempotency records, pacing keys, and its jobs not finished yet; and the send-order
    bodies whose PIX key (keyType phone) is that phone.

    With --pix-key instead: the send-order bodies carrying that PIX key (a key of keyType
    phone compared as phones are): their dead letters and jobs, and the bodies delivery
    records keep.

    \b
    Queued jobs (the queue, its priority lists, retries waiting) are REMOVED, NOT SENT.
    Jobs a worker holds (waiting on an eta or countdown, or running) are removed from
    Redis and revoked: a worker skips a revoked job when its time comes, but one already
    running may still be sent. A job moving between places during the sweep can be
    missed: run forget again to be sure (a second run finding nothing is the proof).
    """
    if (phone is None) == (pix_key is None):
        fail("give one of --phone and --pix-key")
    settings = settings_or_exit()
    instance_ids = {alias: i.instance_id for alias, i in settings.instances().items()}
    state, letters = state_redis(settings), dead_letter_store()
    broker = reachable(settings.celery_broker_url.get_secret_value())
    erasure: Erasure | PixErasure
    if pix_key is not None:
        if not pix_key.strip() or len(pix_key) > PIX_KEY_MAX_LENGTH:
            fail(f"--pix-key must be 1 to {PIX_KEY_MAX_LENGTH} characters, not blank")
        field, masked = "pix_key", mask_pix_key(pix_key)
        erasure = PixForgetter(state, letters, instance_ids=instance_ids).forget(
            pix_key, broker=broker, dry_run=dry_run
        )
    else:
        target = normalized_phone(str(phone))
        if not PHONE_DIGITS.fullmatch(target):
            fail("--phone must be 10 to 15 digits, DDI DDD NUMBER (e.g. 5511999999999)")
        field, masked = "phone", mask_phone(target)
        erasure = Forgetter(state, letters, instance_ids=instance_ids).forget(
            target, broker=broker, dry_run=dry_run
        )
    broker.close()
    revoked = 0 if dry_run else _revoke(erasure.queue)
    counts = erasure.as_dict()
    if as_json:
        click.echo(json.dumps({field: masked, "dry_run": dry_run, **counts, "revoked": revoked}))
        return
    verb = "would erase" if dry_run else "erased"
    parts = [f"{counts[name]} {label}" for name, label in LABELS.items() if name in counts]
    click.echo(f"{masked}: {verb} " + ", ".join(parts))
    if isinstance(erasure, Erasure) and erasure.unlinked_short_letters:
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


def _revoke(sweep: QueueSweep) -> int:
    """Revoke the jobs workers held: their messages are in the workers' memory, not Redis."""
    job_ids = sorted(set(sweep.held_ids))
    if not job_ids:
        return 0
    from worker.celery_app import app

    app.control.revoke(job_ids)
    return len(job_ids)
