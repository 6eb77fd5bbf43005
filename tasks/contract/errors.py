"""The exception hierarchy: what a job's failure means and whether trying again can help.

::

    ZapiQueueError
    ├── PermanentError            the job cannot succeed as it is: fail at once, never retry
    │   ├── InvalidBodyError      the body broke the schema; the message names every field
    │   ├── ZapiRejectedError     Z-API refused it (4xx, or a 200 that carries an error)
    │   ├── StaleUpdateError      it would move its order backward: not sent, not a dead letter
    │   ├── SupersededError       a newer update of its order and field went instead: not sent
    │   ├── UnknownOrderError     a short update whose order never reached the order book
    │   ├── UnknownInstanceError  the job names an instance alias the fleet does not know
    │   ├── UnknownTaskError      the message names a task this worker does not run
    │   ├── InvalidMessageError   the message is no task message (undecodable, no protocol)
    │   └── DeliveryFailedError   Z-API accepted it, then reported that delivery failed
    ├── TransientError            the same job may succeed later: retry with backoff
    │   ├── ZapiUnavailableError  Z-API answered 408, 425 or 5xx
    │   ├── ZapiRateLimitedError  Z-API answered 429
    │   └── ZapiTransportError    timeout, connection refused or reset (``ambiguous`` when
    │                             the request was sent, so Z-API may have delivered it)
    └── AttemptsExhaustedError    transient failures until the budget ran out (ZAPI_MAX_ATTEMPTS
                                  or ZAPI_GIVE_UP_AFTER)

Celery stores a failed job's exception in the result backend as its class name and its
``args``; a producer without our code gets an exception of the same name whose text is
``args[0]``. So every exception here carries one argument, a complete, secret-free message,
and its constructor accepts that message alone (which is how Celery rebuilds it).
"""

from __future__ import annotations


class ZapiQueueError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class PermanentError(ZapiQueueError):
    """Retrying cannot help: the job ends in FAILURE at once."""


class InvalidBodyError(PermanentError):
    """The job's body does not follow Z-API's schema. Nothing was sent."""


class ZapiRejectedError(PermanentError):
    """Z-API answered with a refusal (or a 200 without ``zaapId``/``messageId``)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class StaleUpdateError(PermanentError):
    """The update is behind what its order already showed the customer (a status or payment
    status earlier in the order's life, or an older ``sequence``). Nothing was sent, and there
    is nothing to replay: ``kwargs={"force": True}`` sends such an update anyway."""


class SupersededError(PermanentError):
    """A newer update of the same order and field was in line before this one could be sent
    (``ZAPI_SUPERSEDE`` on, or ``kwargs={"supersede": True}``): nothing was sent, the newer one
    goes instead, and the message names it (and says when a ``message`` text was not sent)."""

    def __init__(self, message: str, *, newer_job: str = "", newer_state: str = "") -> None:
        super().__init__(message)
        self.newer_job = newer_job
        self.newer_state = newer_state


class UnknownOrderError(PermanentError):
    """A short (two-field) update names an order the order book does not have, and its webhook
    did not arrive within ``ZAPI_ORDER_WAIT``. Nothing was sent; it is kept as a dead letter
    (replay it once the order's webhook is in, or send the full body)."""


class UnknownInstanceError(PermanentError):
    """The job names a Z-API instance (``instance`` kwarg) this fleet is not configured for."""


class UnknownTaskError(PermanentError):
    """The message names a task this worker does not run (a mistyped name): nothing was sent.
    It is kept as a dead letter, to be replayed under the right name."""


class InvalidMessageError(PermanentError):
    """The message is no task message this worker can read (a body it cannot decode, a
    content type it does not accept, no Celery protocol): nothing was sent; kept to look at."""


class DeliveryFailedError(PermanentError):
    """Z-API accepted the update (the job succeeded) but its ``DeliveryCallback`` reported that
    the message could not be delivered. The error type of such a job's dead letter."""


class TransientError(ZapiQueueError):
    """The attempt failed for a reason that may pass; ``retry_after`` is Z-API's wish, if any."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class ZapiUnavailableError(TransientError):
    """Z-API answered 408, 425 or 5xx."""


class ZapiRateLimitedError(TransientError):
    """Z-API answered 429: too many requests."""


class ZapiTransportError(TransientError):
    """No answer: the connection failed, was reset, or timed out.

    ``ambiguous`` is True when the failure came after (part of) the request was written: Z-API
    may have received and delivered it. False means Z-API certainly did not get it (DNS,
    connection refused, connect or pool timeout). The message says which, so a producer that
    only sees the text (Celery rebuilds the exception from its message alone, with
    ``ambiguous`` False) can still tell.
    """

    def __init__(
        self,
        message: str,
        *,
        ambiguous: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)
        self.ambiguous = ambiguous


class AttemptsExhaustedError(ZapiQueueError):
    """Every allowed attempt failed transiently; the message tells the last failure."""


def _named(cls: type[ZapiQueueError]) -> dict[str, type[ZapiQueueError]]:
    found = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_named(sub))
    return found


def as_contract_error(exc: BaseException) -> BaseException:
    """``exc`` as one of these classes when Celery rebuilt it under another module.

    Celery rebuilds a job's exception from the module the worker raised it in, and only when
    that module is already imported; otherwise it makes up a class of the same name. Mapping by
    name lets ``except InvalidBodyError`` work in a producer whatever the module is called
    there (``zapi_queue_producer`` in the producer package, ``tasks.contract`` in the worker).
    """
    if isinstance(exc, ZapiQueueError):
        return exc
    cls = _named(ZapiQueueError).get(type(exc).__name__)
    return cls(*exc.args) if cls is not None and exc.args else exc
