"""How a fake Z-API is set up: the credentials it accepts and how it behaves.

One set of defaults for its three forms (in-process, in a subprocess, from the command line), so
that they agree; :meth:`SimulatorConfig.cli_args` turns a set-up into the command line's options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict, get_args

#: When the fake posts the ReceivedCallback of an order message it sent (send-order): after
#: the reply (Z-API's way), before it (a callback that beats the worker's record of the
#: reply), or never (an order whose callback never arrives).
OrderCallback = Literal["after", "before", "never"]
ORDER_CALLBACKS: tuple[OrderCallback, ...] = get_args(OrderCallback)

# The fake's credentials unless told otherwise (the in-process, remote and CLI forms agree).
DEFAULT_INSTANCE_ID = "sim-instance"
DEFAULT_INSTANCE_TOKEN = "sim-instance-token"
DEFAULT_CLIENT_TOKEN = "sim-client-token"


@dataclass(frozen=True)
class OtherInstance:
    """One more Z-API instance the fake serves: its credentials and its own 429 threshold."""

    instance_token: str
    client_token: str = DEFAULT_CLIENT_TOKEN
    rate_limit: float | None = None
    rate_burst: int = 1


class SimulatorOptions(TypedDict, total=False):
    """How a fake Z-API is set up, in-process (ZapiSimulator) or not (RemoteSimulator)."""

    instance_id: str
    instance_token: str
    client_token: str
    latency: float
    latency_jitter: float
    error_rate: float
    seed: int | None
    rate_limit: float | None
    rate_burst: int
    webhook_url: str | None
    delivery_failure_rate: float
    callbacks_before_reply: bool
    order_callback: OrderCallback
    order_callback_delay: float
    callback_delay: float
    queue_spacing: float


@dataclass(eq=False)
class SimulatorConfig:
    """The credentials a fake Z-API accepts and how it behaves; defaults for SimulatorOptions."""

    instance_id: str = DEFAULT_INSTANCE_ID
    instance_token: str = DEFAULT_INSTANCE_TOKEN
    client_token: str = DEFAULT_CLIENT_TOKEN
    latency: float = 0.0
    latency_jitter: float = 0.0
    """Up to this many seconds more per success, drawn at random."""
    error_rate: float = 0.0
    """The share of valid requests answered HTTP 500, at random (0.3: 30%)."""
    seed: int | None = None
    """Seed of the random draws (jitter, errors), for a repeatable run."""
    rate_limit: float | None = None
    rate_burst: int = 1
    webhook_url: str | None = None
    """Where to post Z-API's callbacks (None: no callbacks)."""
    delivery_failure_rate: float = 0.0
    """The share of accepted updates whose DeliveryCallback reports an error, at random."""
    callbacks_before_reply: bool = False
    """Post the DeliveryCallback before answering the update (a callback that beats the
    worker's record of the reply)."""
    order_callback: OrderCallback = "after"
    """When a send-order's ReceivedCallback is posted (with ``notifySentByMe`` on):
    ``after`` the reply, ``before`` it, or ``never``."""
    order_callback_delay: float = 0.0
    """Seconds more before an ``after`` order callback (the callbacks queued after it wait)."""
    callback_delay: float = 0.02
    """Seconds between an accepted send and its delivery callbacks (Z-API's are quick, not
    instant; a test that must see the reply recorded first makes it longer)."""
    queue_spacing: float = 0.05
    """Seconds between two messages an instance's queue fires on reconnect (Z-API's 1-3 s,
    scaled down so that tests are quick)."""

    def cli_args(self) -> list[str]:
        """The same set-up as ``python -m devtools.zapi_sim`` options."""
        args = [
            *("--latency", str(self.latency), "--instance-id", self.instance_id),
            *("--instance-token", self.instance_token, "--client-token", self.client_token),
            *("--rate-burst", str(self.rate_burst), "--queue-spacing", str(self.queue_spacing)),
            *("--latency-jitter", str(self.latency_jitter), "--error-rate", str(self.error_rate)),
        ]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.rate_limit is not None:
            args += ["--rate-limit", str(self.rate_limit)]
        if self.webhook_url is not None:
            args += ["--webhook-url", self.webhook_url]
        args += ["--delivery-failure-rate", str(self.delivery_failure_rate)]
        args += ["--callback-delay", str(self.callback_delay)]
        if self.callbacks_before_reply:
            args += ["--callbacks-before-reply"]
        args += ["--order-callback", self.order_callback]
        args += ["--order-callback-delay", str(self.order_callback_delay)]
        return args
