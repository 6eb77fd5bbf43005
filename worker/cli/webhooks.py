"""``zapi-queue webhooks configure`` and ``webhooks show``: Z-API's side of the webhooks.

Each instance of the fleet posts its callbacks where Z-API was told to. ``configure`` tells
every instance (or one) the receiver's URL at once, with ``notifySentByMe`` on (the order
message's own callback needs it); ``show`` reads back what Z-API has (``GET .../me``). The URL's
secret segment is the receiver's credential: no line printed shows it, nor any token.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from config import Settings
from config.instances import Instance
from tasks.contract.errors import ZapiQueueError
from tasks.zapi.client import ZapiClient
from tasks.zapi.status import InstanceSettings
from worker.cli.common import EXIT_FAILED, fail, one_line, settings_or_exit
from worker.cli.main import main
from worker.webhook_url import masked_url, same_secret, secret_of, url_problem

INSTANCE_HELP = "only this instance (its alias: default, or a ZAPI_INSTANCES key)"


@main.group()
def webhooks() -> None:
    """Z-API's side of the webhooks: where each instance posts its callbacks."""


@webhooks.command("configure")
@click.option(
    "--url",
    required=True,
    help="the receiver's public HTTPS URL: https://HOST/webhooks/zapi/SECRET",
)
@click.option("--instance", "alias", help=INSTANCE_HELP)
def configure(url: str, alias: str | None) -> None:
    """Point every webhook of each instance of the fleet at URL, with notifySentByMe on
    (Z-API's update-every-webhooks). Refuses, before any request, a URL that is not HTTPS
    (Z-API refuses those) or not the receiver's route. Prints what it set, the secret masked;
    exits 1 if any instance failed (each failure named with Z-API's answer)."""
    settings = settings_or_exit()
    secrets = [*settings.secret_values(), secret_of(url) or ""]
    receiver = settings.zapi_webhook_secret
    if problem := url_problem(url, receiver.get_secret_value() if receiver else None):
        fail(f"--url {masked_url(url, secrets)} {problem}")
    shown = masked_url(url, secrets)
    failed = 0
    for instance, client in _clients(settings, alias):
        try:
            client.update_every_webhooks(url, notify_sent_by_me=True)
        except ZapiQueueError as exc:
            click.echo(one_line(f"{_name(instance)}: FAILED: {exc}", secrets), err=True)
            failed += 1
        else:
            line = f"{_name(instance)}: every webhook set to {shown}, notifySentByMe on"
            click.echo(one_line(line, secrets))
    if failed:
        click.echo(f"{failed} instance(s) not configured: see above", err=True)
        sys.exit(EXIT_FAILED)


@webhooks.command("show")
@click.option("--instance", "alias", help=INSTANCE_HELP)
def show(alias: str | None) -> None:
    """Print each instance's webhook URLs and notifySentByMe as Z-API has them (GET .../me),
    secrets masked, with what would keep callbacks from reaching this receiver. Exits 1 if an
    instance could not be read."""
    settings = settings_or_exit()
    receiver = settings.zapi_webhook_secret
    secret = receiver.get_secret_value() if receiver else None
    secrets = settings.secret_values()
    failed = 0
    for instance, client in _clients(settings, alias):
        try:
            current = client.instance_settings()
        except ZapiQueueError as exc:
            click.echo(one_line(f"{_name(instance)}: FAILED: {exc}", secrets), err=True)
            failed += 1
            continue
        for line in _settings_lines(instance, current, secret):
            click.echo(one_line(line, secrets))
    if failed:
        sys.exit(EXIT_FAILED)


def _settings_lines(
    instance: Instance, current: InstanceSettings, secret: str | None
) -> Iterator[str]:
    """One instance as ``show`` prints it; every URL masked, notes where a callback would not
    reach this receiver."""
    state = {True: "connected", False: "DISCONNECTED", None: "connection unknown"}
    notify = {True: "on", False: "OFF", None: "unknown"}[current.notify_sent_by_me]
    yield f"{_name(instance)}: {state[current.connected]}, notifySentByMe {notify}"
    if current.notify_sent_by_me is False:
        yield "  (order messages sent by the number will not come back: run webhooks configure)"
    if not current.webhook_urls:
        yield "  Z-API returned no webhook URL: check its admin panel"
    for name, url in current.webhook_urls.items():
        if not url:
            yield f"  {name}: not set"
            continue
        given = secret_of(url)
        note = ""
        if url_problem(url) is not None:
            note = "  (not this receiver's HTTPS route)"
        elif secret and given is not None and not same_secret(given, secret):
            note = "  (its secret is not ZAPI_WEBHOOK_SECRET: the receiver answers 404)"
        yield f"  {name}: {masked_url(url, [given or ''])}{note}"


def _clients(settings: Settings, alias: str | None) -> Iterator[tuple[Instance, ZapiClient]]:
    """Each chosen instance with a client of its own, closed after its turn; a one-line error
    (exit 2) when there is none to choose or ``alias`` is not one of them."""
    instances = settings.instances()
    problem = settings.instances_problem()
    if alias is not None and alias not in instances:
        known = ", ".join(sorted(instances)) or "none"
        fail(
            f"--instance {alias}: not a configured instance (configured: {known})"
            + (f"; {problem}" if problem else "")
        )
    if alias is None and problem:
        fail(problem)
    if not instances:
        fail(
            "no Z-API instance configured: set ZAPI_INSTANCE_ID, ZAPI_INSTANCE_TOKEN and "
            "ZAPI_CLIENT_TOKEN, or ZAPI_INSTANCES"
        )
    for name in [alias] if alias is not None else sorted(instances):
        instance = instances[name]
        client = ZapiClient.from_settings(settings, instance)
        try:
            yield instance, client
        finally:
            client.close()


def _name(instance: Instance) -> str:
    """``instance store-sp``, with its label when it says more (the default's id or alias)."""
    if instance.label == instance.alias:
        return f"instance {instance.alias}"
    return f"instance {instance.alias} ({instance.label})"
