"""``python -m devtools.zapi_sim``: the fake Z-API alone, as compose's ``zapi-sim`` service and
devtools/remote_sim.py run it; it prints the settings a worker needs, then serves until stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading

from devtools.zapi_sim.config import (
    DEFAULT_CLIENT_TOKEN,
    DEFAULT_INSTANCE_ID,
    DEFAULT_INSTANCE_TOKEN,
    ORDER_CALLBACKS,
    SimulatorConfig,
    SimulatorOptions,
)
from devtools.zapi_sim.simulator import ZapiSimulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.zapi_sim",
        description="Run the fake Z-API on loopback. It accepts only its own credentials "
        "(403 otherwise, as Z-API): point a worker at it with ZAPI_BASE_URL and the three "
        "credentials it prints at start, by default ZAPI_INSTANCE_ID="
        f"{DEFAULT_INSTANCE_ID} ZAPI_INSTANCE_TOKEN={DEFAULT_INSTANCE_TOKEN} "
        f"ZAPI_CLIENT_TOKEN={DEFAULT_CLIENT_TOKEN}.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    default = SimulatorConfig()
    parser.add_argument(
        "--latency", type=float, default=default.latency, help="seconds per success"
    )
    parser.add_argument("--rate-limit", type=float, default=None, help="429 above this many/s")
    parser.add_argument(
        "--rate-burst", type=int, default=default.rate_burst, help="extra per second"
    )
    parser.add_argument(
        "--latency-jitter", type=float, default=default.latency_jitter, help="random extra s"
    )
    parser.add_argument(
        "--error-rate", type=float, default=default.error_rate, help="share answered 500"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random draws")
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("ZAPI_SIM_WEBHOOK_URL") or None,
        help="post Z-API's callbacks here (default: $ZAPI_SIM_WEBHOOK_URL)",
    )
    parser.add_argument(
        "--delivery-failure-rate", type=float, default=0.0, help="share of failed deliveries"
    )
    parser.add_argument(
        "--callbacks-before-reply", action="store_true", help="DeliveryCallback before the reply"
    )
    parser.add_argument(
        "--order-callback",
        choices=ORDER_CALLBACKS,
        default=default.order_callback,
        help="a send-order's ReceivedCallback: after the reply, before it, or never",
    )
    parser.add_argument(
        "--order-callback-delay",
        type=float,
        default=default.order_callback_delay,
        help="seconds more before an order callback posted after the reply",
    )
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=default.callback_delay,
        help="seconds between an accepted send and its delivery callbacks",
    )
    parser.add_argument(
        "--queue-spacing",
        type=float,
        default=default.queue_spacing,
        help="seconds between two messages a reconnected instance's queue fires",
    )
    parser.add_argument(
        "--instance-id", default=default.instance_id, help=f"default {default.instance_id}"
    )
    parser.add_argument(
        "--instance-token", default=default.instance_token, help=f"default {default.instance_token}"
    )
    parser.add_argument(
        "--client-token", default=default.client_token, help=f"default {default.client_token}"
    )
    args = parser.parse_args(argv)
    options = {name: getattr(args, name) for name in SimulatorOptions.__annotations__}
    simulator = ZapiSimulator(host=args.host, port=args.port, **options)
    with simulator:
        print(f"fake Z-API listening on {simulator.base_url}; a worker needs:", flush=True)
        for line in simulator.worker_settings():
            print(f"  export {line}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
