"""The spans of a job's life, for OpenTelemetry: off unless a process turned tracing on.

``worker/tracing_setup.py`` builds the SDK's tracer provider when ``OTEL_TRACES_EXPORTER``
asks for one (config/tracing.py) and hands its tracer to :func:`enable`. Until then every
function here returns at its first line and imports nothing of OpenTelemetry, so tracing off
costs a global read per hook.

What the spans hold is chosen here, in one place, because spans are read by people too: no
phone, PIX key, body, token or password goes into a name, an attribute or an event. Free text
(an error, an attempt's detail) passes through the same redaction as the logs, and a run of
digits like a phone's is masked. The Z-API request's URL is named by its route template:
the instance token sits in the real one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from tasks.contract.redaction import mask_digit_runs, redact
from tasks.contract.trace_context import (
    TRACEPARENT,
    context_of,
    current_traceparent,
    trace_headers,
)

#: The tracer of this process once tracing is on (an ``opentelemetry.trace.Tracer``).
_tracer: Any = None
#: The secrets redacted from every text a span carries (the settings' ``secret_values``).
_secrets: Sequence[str] = ()
#: The most characters of free text one attribute keeps.
TEXT_MAX = 300
#: The route of every Z-API call, as spans name it (never the real URL).
ZAPI_ROUTE = "/instances/{instance}/token/{token}/"


def enable(tracer: Any, secrets: Sequence[str]) -> None:
    """Trace from now on with ``tracer``, redacting ``secrets`` from any text."""
    global _tracer, _secrets
    _secrets = tuple(secrets)
    _tracer = tracer


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def safe_text(value: object) -> str:
    """``value`` as a span may carry it: secrets redacted, phone-like digits masked, cut."""
    return mask_digit_runs(redact(str(value), _secrets))[:TEXT_MAX]


#: Attributes as the code gives them: a None value is left out.
Attributes = Mapping[str, str | int | float | bool | None]


class Span:
    """What the code does to a span; this base does nothing, for tracing off."""

    def set(self, attributes: Attributes) -> None:
        """Set attributes (secrets redacted from a text, a None left out)."""

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """Add a timed event to the span."""

    def error(self, error_type: str, text: str) -> None:
        """Mark the span as failed with ``error_type`` and a (redacted) description."""


OFF = Span()


class _Recording(Span):
    def __init__(self, span: Any) -> None:
        self._span = span

    def set(self, attributes: Attributes) -> None:
        self._span.set_attributes(_attributes(attributes))

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        self._span.add_event(name, _attributes(attributes or {}))

    def error(self, error_type: str, text: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR, safe_text(text)))


def _attributes(given: Attributes) -> dict[str, Any]:
    """The attributes a span gets: secrets redacted from texts (free text is made
    :func:`safe_text` by the caller), None values left out."""
    return {
        name: redact(value, _secrets)[:TEXT_MAX] if isinstance(value, str) else value
        for name, value in given.items()
        if value is not None
    }


def current() -> Span:
    """The span this thread is in (the execution's, the request's), or :data:`OFF`."""
    if _tracer is None:
        return OFF
    from opentelemetry import trace

    span = trace.get_current_span()
    return _Recording(span) if span.is_recording() else OFF


@contextlib.contextmanager
def _span(name: str, kind: str, parent: Any = None, **options: Any) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=getattr(SpanKind, kind),
        record_exception=False,  # an exception's text is not ours to publish: error() is
        set_status_on_exception=False,
        **options,
    ) as span:
        yield _Recording(span)


@contextlib.contextmanager
def execution(task_name: str, job_id: str, headers: Any) -> Iterator[Span]:
    """One execution of a job: a CONSUMER span, child of the trace its message carries
    (``traceparent``), so that every execution of one job is in the producer's trace."""
    if _tracer is None:
        yield OFF
        return
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.message.id": job_id,
        "zapi.task": task_name,
    }
    parent = context_of(trace_headers(headers))
    with _span(f"process {task_name}", "CONSUMER", parent, attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def zapi_request(method: str, route: str, url: httpx.URL) -> Iterator[Span]:
    """A request to Z-API at ``url``: a CLIENT span named by the route template and the
    server, never the URL itself."""
    if _tracer is None:
        yield OFF
        return
    template = ZAPI_ROUTE + route
    attributes = {
        "http.request.method": method,
        "url.template": template,
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
    }
    with _span(f"{method} {template}", "CLIENT", attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """A wait inside one execution (its rate slot), as a timed child span."""
    if _tracer is None:
        yield
        return
    with _span(f"wait for {what}", "INTERNAL"):
        yield


@contextlib.contextmanager
def serving(route: str, method: str) -> Iterator[Span]:
    """A request the process serves (the webhook receiver's), named by its route template."""
    if _tracer is None:
        yield OFF
        return
    attributes = {"http.request.method": method, "http.route": route}
    with _span(f"{method} {route}", "SERVER", attributes=attributes) as span:
        yield span


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to keep with what it wrote (a delivery record)
    so that a later process can continue the trace; None when not tracing."""
    return None if _tracer is None else current_traceparent()


def joined(name: str, parent_traceparent: str | None, attributes: Attributes) -> None:
    """A short span in the trace of ``parent_traceparent`` (a delivery callback joining the
    job that sent its message), linked to the current span (the request that brought it).
    Without a parent it is a child of the current span."""
    if _tracer is None:
        return
    from opentelemetry import trace

    here = trace.get_current_span().get_span_context()
    parent = context_of({TRACEPARENT: parent_traceparent}) if parent_traceparent else None
    links = [trace.Link(here)] if here.is_valid and parent is not None else None
    shown = _attributes(attributes)
    kind = trace.SpanKind.INTERNAL
    _tracer.start_span(name, context=parent, kind=kind, links=links, attributes=shown).end()


def log_ids() -> tuple[str, str] | None:
    """The current trace and span ids in hex, for a log line; None when there are none."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
