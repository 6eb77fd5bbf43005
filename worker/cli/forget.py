"""``zapi-queue forget --phone P``: erase a customer's records (tasks/state/erasure.py)."""

from __future__ import annotations

import json

import click

from tasks.contract.redaction import mask_phone
from tasks.contract.schemas import normalized_phone
from tasks.state.erasure import Forgetter
from worker.cli.common import dead_letter_store, reachable, settings_or_exit, state_redis
from worker.cli.main import main

LABELS = {
    "dead_letters": "dead letters",
    "order_snapshots": "order snapshots",
    "delivery_states": "delivery states",
    "idempotency_records": "idempotency records",
    "pacing_keys": "recipient pacing keys",
}


@main.command("forget")
@click.option("--phone", required=True, help="the customer's phone, as sent (formatting ignored)")
@click.option("--dry-run", is_flag=True, help="count what would be erased, erase nothing")
@click.option("--json", "as_json", is_flag=True, help="print the counts as JSON")
def forget(phone: str, dry_run: bool, as_json: bool) -> None:
    """Erase what zapi-queue keeps about a phone (LGPD/GDPR erasure): its dead letters,
    order snapshots, delivery states and idempotency records, and pacing keys.

    Queued jobs for the phone are left to be sent, and counted: run it again once they are done.
    """
    settings = settings_or_exit()
    instance_ids = {alias: i.instance_id for alias, i in settings.instances().items()}
    forgetter = Forgetter(state_redis(settings), dead_letter_store(), instance_ids=instance_ids)
    broker = reachable(settings.celery_broker_url.get_secret_value())
    erasure = forgetter.forget(phone, broker=broker, dry_run=dry_run)
    broker.close()
    counts = erasure.as_dict()
    masked = mask_phone(normalized_phone(phone))
    if as_json:
        click.echo(json.dumps({"phone": masked, "dry_run": dry_run, **counts}))
        return
    verb = "would erase" if dry_run else "erased"
    parts = [f"{counts[name]} {label}" for name, label in LABELS.items()]
    click.echo(f"{masked}: {verb} " + ", ".join(parts))
    if erasure.queued_jobs_left:
        click.echo(
            f"{erasure.queued_jobs_left} queued jobs for this phone will still be sent: "
            "run forget again once they are done"
        )
