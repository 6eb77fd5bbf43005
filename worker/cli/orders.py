"""``zapi-queue order show`` and ``zapi-queue webhook``: the order book and what feeds it."""

from __future__ import annotations

import json

import click

from config import ConfigurationError
from tasks.contract.redaction import mask_phone, masked_body
from tasks.state.book import OrderBook
from worker.cli.common import EXIT_FAILED, fail, settings_or_exit, state_redis, when
from worker.cli.main import main


@main.group()
def order() -> None:
    """The order book: orders as Z-API's order webhook (or a full update) described them."""


@order.command("show")
@click.argument("order_id")
@click.option("--instance", help="the Z-API instance (default: ZAPI_INSTANCE_ID)")
@click.option("--json", "as_json", is_flag=True, help="print the snapshot as JSON")
def order_show(order_id: str, instance: str | None, as_json: bool) -> None:
    """Print one order (phone masked), found by its orderRequestId, its order message's
    messageId or the shop's own order key (send-order's order_key). Its statuses are the
    current ones: the last delivered update's, else the webhook's. Exits 1 when the book does
    not have it (an order message sent whose order webhook has not come is said so)."""
    settings = settings_or_exit()
    instance = instance or settings.zapi_instance_id
    if instance is None:
        fail("name the instance: --instance, or set ZAPI_INSTANCE_ID")
    book = OrderBook(state_redis(settings), instance_id=instance, ttl=settings.zapi_order_ttl)
    snapshot = (
        book.find(order_request_id=order_id)
        or book.find(message_id=order_id)
        or book.find(order_key=order_id)
    )
    sent = book.order_message(order_id)
    if snapshot is None:
        if sent:
            fail(
                f"order key {order_id}: order message {sent.get('messageId')} sent "
                f"{_shown_time(sent.get('orderSentAt'))} by job {sent.get('orderJob')}; its "
                "order webhook (ReceivedCallback with reviewAndPay) has not come: is "
                "notifySentByMe on? (zapi-queue webhooks show)",
                EXIT_FAILED,
            )
        fail(f"no order {order_id} in the order book of instance {instance}", EXIT_FAILED)
    record = masked_body(dict(snapshot.data), show_phone=True)  # a PIX key, if it kept one
    if sent:
        record["orderKey"] = order_id
    record["phone"] = mask_phone(str(record.get("phone")))
    record["orderStatus"] = snapshot.order_status
    record["paymentStatus"] = snapshot.payment_status
    record["statusesUpdatedAt"] = snapshot.delivered_at
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    order_data = record.pop("order", {})
    for name, value in record.items():
        shown = when(value) if name in ("at", "statusesUpdatedAt") and value else value
        click.echo(f"{name}: {shown}")
    click.echo(f"currency: {order_data.get('currency')}")
    for name in ("discount", "tax", "shipping"):
        if name in order_data:
            click.echo(f"{name}: {order_data[name]}")
    for product in order_data.get("products", []):
        click.echo(
            f"product: {product.get('productId')}  {product.get('quantity')} x "
            f"{product.get('name')} at {product.get('value')}"
            f"{'  (custom item)' if product.get('isCustomItem') else ''}"
        )


def _shown_time(epoch: str | None) -> str:
    """A time kept in Redis, readable; as stored when it is no time (Redis is input too)."""
    try:
        return when(float(epoch or ""))
    except (ValueError, OverflowError):
        return repr(epoch)


@main.command("webhook")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 in a container")
@click.option("--port", default=8000, show_default=True, type=int)
def webhook(host: str, port: int) -> None:
    """Receive Z-API's webhooks: order messages feed the order book, delivery and status
    callbacks the delivery states, connection events the instance's health.

    Give Z-API the URL https://<host>/webhooks/zapi/<ZAPI_WEBHOOK_SECRET> (behind a TLS proxy:
    Z-API only calls HTTPS). Needs ZAPI_WEBHOOK_SECRET.
    """
    from worker.webhook import serve

    settings = settings_or_exit()
    try:
        serve(settings, host=host, port=port)
    except ConfigurationError as exc:
        fail(str(exc))
