"""The trace a job belongs to, carried in its message headers as W3C trace context.

A producer that traces (an application with OpenTelemetry's SDK configured) gets a PRODUCER
span per published job, and the job's message carries ``traceparent`` (and ``tracestate``)
in its headers, so that every execution of the job, retries included, is a child of it. With
only ``opentelemetry-api`` installed, the application's current span is carried. Without it,
nothing happens: the producer needs nothing but celery. A bare ``send_task(...,
headers={"traceparent": ...})`` is read by the worker the same way.

Only the two W3C headers are carried, never baggage: baggage is free text an application may
fill with anything, and the worker shows its headers in places people read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The headers of the W3C trace context, the only ones the worker reads of a trace.
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)

try:  # optional: the producer works with nothing but celery
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised by the producer package check
    _trace = None  # type: ignore[assignment]
    _PROPAGATOR: Any = None
else:
    _PROPAGATOR = TraceContextTextMapPropagator()


@contextlib.contextmanager
def publishing(task_name: str, job_id: str, queue: str = "celery") -> Iterator[dict[str, str]]:
    """Around one publish: the PRODUCER span (when the application traces) and the headers
    that carry it (empty when there is no trace to carry)."""
    headers: dict[str, str] = {}
    if _trace is None:
        yield headers
        return
    tracer = _trace.get_tracer("zapi_queue.producer")
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "zapi.task": task_name,
    }
    with tracer.start_as_current_span(
        f"send {task_name}", kind=_trace.SpanKind.PRODUCER, attributes=attributes
    ):
        _PROPAGATOR.inject(headers)
        yield headers


def context_of(headers: dict[str, str]) -> Any:
    """The OpenTelemetry context these W3C headers carry (an empty one if they are not valid);
    only for a process that has OpenTelemetry (tasks/tracing.py, once tracing is on)."""
    return _PROPAGATOR.extract(headers)


def current_traceparent() -> str | None:
    """The current span's ``traceparent`` (None without a valid span); as :func:`context_of`."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_headers(headers: Any) -> dict[str, str]:
    """The W3C trace context of a message's headers, if it has one of the right shape (headers
    are input like any other: a value that is not text is ignored)."""
    if not isinstance(headers, dict):
        return {}
    found = {name: headers.get(name) for name in TRACE_HEADERS}
    return {name: value for name, value in found.items() if isinstance(value, str) and value}
