"""``python -m devtools.sample_webhook URL``: post one order message, as Z-API's webhook would.

Z-API posts a ``ReceivedCallback`` with ``reviewAndPay`` when an order message is sent (FACTS.md);
only that callback carries what the update endpoints need (``referenceId``, ``orderRequestId``,
the products' ids). Without a real Z-API, this posts one in that documented shape to a webhook
receiver (``zapi-queue webhook``), so a two-field update can be tried by hand:

    python -m devtools.sample_webhook http://127.0.0.1:8000/webhooks/zapi/$ZAPI_WEBHOOK_SECRET \\
        --message-id LOCAL-ORDER-1
    echo '{"messageId": "LOCAL-ORDER-1", "orderStatus": "shipped"}' | zapi-queue enqueue status

It prints the receiver's answer and the order's ids; the phone is shown masked, and the secret in
the URL is never printed. Exit status 1 when the receiver does not answer 200.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

import httpx

from devtools.zapi_callbacks import order_message
from tasks.contract.redaction import mask_phone


def _shown(url: str) -> str:
    """The URL without its last path segment, the webhook's secret."""
    parts = urlsplit(url)
    path = parts.path.rsplit("/", 1)[0] + "/<secret>" if "/webhooks/" in parts.path else "/..."
    return f"{parts.scheme}://{parts.netloc}{path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Post Z-API's order webhook (ReceivedCallback with reviewAndPay) to URL."
    )
    parser.add_argument("url", help="the receiver's URL, .../webhooks/zapi/<ZAPI_WEBHOOK_SECRET>")
    parser.add_argument(
        "--instance-id",
        default=os.environ.get("ZAPI_INSTANCE_ID") or "sim-instance",
        help="the callback's instanceId (default: $ZAPI_INSTANCE_ID, else the fake's)",
    )
    parser.add_argument("--message-id", default=None, help="the order message's id (random)")
    parser.add_argument("--order-request-id", default=None, help="the order's id (random)")
    parser.add_argument("--phone", default="5511999990000", help="the customer's phone")
    args = parser.parse_args(argv)
    payload = order_message(
        args.instance_id,
        phone=args.phone,
        message_id=args.message_id,
        order_request_id=args.order_request_id,
    )
    try:
        response = httpx.post(args.url, json=payload, timeout=10)
    except httpx.HTTPError as exc:
        print(f"{_shown(args.url)}: {type(exc).__name__}", file=sys.stderr)
        return 1
    order = payload["reviewAndPay"]
    try:
        answer = response.json()
    except ValueError:
        answer = response.text[:200]
    summary = {
        "status": response.status_code,
        "answer": answer,
        "messageId": payload["messageId"],
        "orderRequestId": order["orderRequestId"],
        "referenceId": order["referenceId"],
        "phone": mask_phone(payload["phone"]),
    }
    print(json.dumps(summary))
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
