"""What a producer needs to enqueue order messages and order updates: the body schemas, the task
names, the errors a job can end with, and :class:`Producer`.

This package needs only celery (with redis) and pydantic. The worker imports it as
``tasks.contract``; the producer distribution (``pip install zapi-queue-producer``, built from
this folder: see its README.md) ships the same files as ``zapi_queue_producer``. So every
import inside it is relative, and nothing here imports the rest of ``tasks`` or ``worker``.
"""

from .endpoints import TASK_NAMES, Endpoint
from .errors import (
    AttemptsExhaustedError,
    DeliveryFailedError,
    InvalidBodyError,
    InvalidMessageError,
    PermanentError,
    StaleUpdateError,
    SupersededError,
    TransientError,
    UnknownInstanceError,
    UnknownOrderError,
    UnknownTaskError,
    ZapiQueueError,
    ZapiRateLimitedError,
    ZapiRejectedError,
    ZapiTransportError,
    ZapiUnavailableError,
)
from .producer import BulkResult, Producer
from .schemas import (
    OrderPaymentUpdate,
    OrderStatusUpdate,
    OrderUpdate,
    ShortPaymentUpdate,
    ShortStatusUpdate,
    ShortUpdate,
    ZapiReply,
)
from .send_order import SendOrder
from .validation import validate_request, validate_send_order, validate_update

__version__ = "0.1.0"

__all__ = [
    "TASK_NAMES",
    "AttemptsExhaustedError",
    "BulkResult",
    "DeliveryFailedError",
    "Endpoint",
    "InvalidBodyError",
    "InvalidMessageError",
    "OrderPaymentUpdate",
    "OrderStatusUpdate",
    "OrderUpdate",
    "PermanentError",
    "Producer",
    "SendOrder",
    "ShortPaymentUpdate",
    "ShortStatusUpdate",
    "ShortUpdate",
    "StaleUpdateError",
    "SupersededError",
    "TransientError",
    "UnknownInstanceError",
    "UnknownOrderError",
    "UnknownTaskError",
    "ZapiQueueError",
    "ZapiRateLimitedError",
    "ZapiRejectedError",
    "ZapiReply",
    "ZapiTransportError",
    "ZapiUnavailableError",
    "__version__",
    "validate_request",
    "validate_send_order",
    "validate_update",
]
