"""Tracing in process: when it is on, what the spans hold, and what they never hold.

An SDK tracer with an in-memory exporter stands in for the worker's (tasks.tracing.enable), the
Z-API client runs over ``httpx.MockTransport``, and the webhook's callbacks join a trace kept
in a real Redis. The end-to-end proof through real processes is tests/test_tracing_e2e.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from config import ZapiCredentials
from config.tracing import traces_exporters
from devtools.ports import free_port
from tasks import tracing
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import ZapiRejectedError, ZapiTransportError
from tasks.contract.trace_context import trace_headers
from tasks.state.deadletter import DeadLetter
from tasks.state.deliveries import DeliveryBook
from tasks.zapi.client import ZapiClient
from tests.bodies import unique_body
from tests.conftest import empty_db_fixture
from tests.test_execution import Stack, make_stack, reply

TOKEN, CLIENT_TOKEN = "tok-SECRET-77", "ct-SECRET-77"
CREDENTIALS = ZapiCredentials("inst-77", SecretStr(TOKEN), SecretStr(CLIENT_TOKEN))
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

state = empty_db_fixture(12, name="state")
execution_state = empty_db_fixture(14, name="execution_state")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider.get_tracer("test"), [TOKEN, CLIENT_TOKEN])
    yield exporter
    tracing.disable()
    provider.shutdown()


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, ["zipkin"]),  # refused by the set-up, named
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_asked_for(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert traces_exporters(environ) == exporters


def test_off_every_hook_is_a_no_op() -> None:
    assert not tracing.enabled()
    with tracing.execution("zapi.order_status_update", "job-1", {"traceparent": TRACEPARENT}) as s:
        assert s is tracing.OFF
    assert tracing.current() is tracing.OFF
    assert tracing.traceparent() is None
    assert tracing.log_ids() is None


def test_a_worker_without_tracing_loads_no_tracer_and_no_exporter() -> None:
    """The cost of tracing off: neither the SDK's tracing nor an exporter is loaded (redis-py
    loads the SDK's metrics for its own observability module when the SDK is installed)."""
    prefixes = ("opentelemetry.sdk.trace", "opentelemetry.exporter")
    code = (
        "import sys, worker.celery_app, tasks.execution, worker.webhook;"
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_an_execution_continues_the_message_trace(spans: InMemorySpanExporter) -> None:
    with tracing.execution("zapi.order_status_update", "job-1", {"traceparent": TRACEPARENT}):
        tracing.current().event("retry", {"zapi.attempt": 1})
        with tracing.waiting("a rate slot"):
            pass
    wait, execution = finished(spans)
    assert format(execution.context.trace_id, "032x") == TRACE_ID
    assert execution.parent is not None
    assert format(execution.parent.span_id, "016x") == ("00f067aa0ba902b7")
    assert wait.parent is not None
    assert wait.parent.span_id == execution.context.span_id
    assert [event.name for event in execution.events] == ["retry"]


@settings(max_examples=200, deadline=None)
@given(
    headers=st.one_of(
        st.none(),
        st.text(max_size=20),
        st.dictionaries(
            st.sampled_from(["traceparent", "tracestate", "baggage", "zapi-attempts"]),
            st.one_of(st.text(max_size=80), st.integers(), st.none(), st.lists(st.text())),
        ),
    )
)
def test_any_headers_start_an_execution_span_and_nothing_else(headers: object) -> None:
    """A producer's mangled trace headers are input like any other: a root span, never a
    failure, and never anything but the two W3C headers read."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider.get_tracer("test"), [])
    try:
        with tracing.execution("zapi.order_status_update", "job-1", headers):
            pass
    finally:
        tracing.disable()
    (span,) = exporter.get_finished_spans()
    assert span.name == "process zapi.order_status_update"
    assert set(trace_headers(headers)) <= {"traceparent", "tracestate"}


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), secret=st.sampled_from([TOKEN, CLIENT_TOKEN]))
def test_free_text_in_a_span_holds_no_secret_and_no_phone(text: str, secret: str) -> None:
    tracing.enable(None, [TOKEN, CLIENT_TOKEN])
    try:
        shown = tracing.safe_text(f"{text} {secret} 5511987654321 {text}")
    finally:
        tracing.disable()
    assert secret not in shown
    assert "5511987654321" not in shown
    assert len(shown) <= tracing.TEXT_MAX


def client_over(handler: httpx.MockTransport) -> ZapiClient:
    return ZapiClient("https://api.z-api.io", CREDENTIALS, transport=handler)


def test_the_zapi_request_span_names_the_route_never_the_url(
    spans: InMemorySpanExporter,
) -> None:
    reply = {"zaapId": "z1", "messageId": "m1", "id": "m1"}
    client = client_over(httpx.MockTransport(lambda request: httpx.Response(200, json=reply)))
    client.send(Endpoint.ORDER_STATUS_UPDATE, unique_body())
    (span,) = finished(spans)
    assert span.name == "POST /instances/{instance}/token/{token}/order-status-update"
    assert span.kind.name == "CLIENT"
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "url.template": "/instances/{instance}/token/{token}/order-status-update",
        "server.address": "api.z-api.io",
        "server.port": 443,
        "http.response.status_code": 200,
    }
    assert TOKEN not in repr(span.to_json())


def test_a_200_carrying_an_error_and_a_transport_failure_mark_the_span_failed(
    spans: InMemorySpanExporter,
) -> None:
    refusing = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"error": "Instance not found"})
    )
    with pytest.raises(ZapiRejectedError):
        client_over(refusing).send(Endpoint.ORDER_STATUS_UPDATE, unique_body())

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"lost talking to {request.url}")  # the URL holds the token

    with pytest.raises(ZapiTransportError):
        client_over(httpx.MockTransport(broken)).send(Endpoint.ORDER_STATUS_UPDATE, unique_body())
    refused, lost = finished(spans)
    assert refused.status.status_code.name == "ERROR"
    assert (refused.attributes or {})["error.type"] == "ZapiRejectedError"
    assert lost.status.status_code.name == "ERROR"
    assert (lost.attributes or {})["error.type"] == "ReadError"
    assert TOKEN not in json.dumps([refused.to_json(), lost.to_json()])


def test_a_callback_joins_the_trace_its_delivery_record_kept(
    spans: InMemorySpanExporter, state: redis.Redis
) -> None:
    book = DeliveryBook(state, instance_id="inst-77", ttl=60)
    letter = DeadLetter("job-1", "zapi.order_status_update", {}, "DeliveryFailedError", "", 1, 0, 0)
    book.link("m-traced", zaap_id="z1", letter=letter, reply_key="k", trace=TRACEPARENT)
    book.link("m-untraced", zaap_id="z2", letter=letter, reply_key="k")
    assert book.traces(["m-traced", "m-untraced", "m-unknown"]) == {"m-traced": TRACEPARENT}
    for damaged in ("[1, 2]", "not json", '{"trace": 7}', '"a text"'):  # a record gone wrong
        state.hset(book.key("m-damaged"), "job", damaged)
        assert book.traces(["m-damaged", "m-traced"]) == {"m-traced": TRACEPARENT}
    with tracing.serving("/webhooks/zapi/{secret}", "POST"):
        tracing.joined("MessageStatusCallback: read", TRACEPARENT, {"zapi.message_id": "m"})
    joined, request = finished(spans)
    assert format(joined.context.trace_id, "032x") == TRACE_ID
    assert [link.context.span_id for link in joined.links] == [request.context.span_id]
    assert request.name == "POST /webhooks/zapi/{secret}"


def run_python(code: str, **environ: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, **environ},
    )
    return done.stdout.strip()


def test_a_collector_that_never_answers_does_not_hold_a_stopping_process() -> None:
    code = (
        "import time\n"
        "from tasks import tracing\n"
        "from worker.tracing_setup import start_tracing, stop_tracing\n"
        "assert start_tracing('test')\n"
        "with tracing.execution('zapi.order_status_update', 'job-1', {}):\n"
        "    pass\n"
        "began = time.monotonic()\n"
        "stop_tracing(0.5)\n"
        "print(round(time.monotonic() - began, 2), tracing.enabled())\n"
    )
    silent = free_port()  # nothing listens: each export attempt fails, and is retried
    took, still_on = run_python(
        code,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{silent}",
    ).split()
    assert float(took) < 1.5
    assert still_on == "False"


def test_an_exporter_that_is_not_shipped_leaves_tracing_off() -> None:
    code = (
        "import logging; logging.basicConfig()\n"
        "from worker.tracing_setup import start_tracing\n"
        "print(start_tracing('test'))\n"
    )
    assert run_python(code, OTEL_TRACES_EXPORTER="zipkin") == "False"


def events_of(span: ReadableSpan) -> dict[str, dict[str, object]]:
    return {event.name: dict(event.attributes or {}) for event in span.events}


def executions(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in finished(exporter) if span.name.startswith("process ")]


def test_a_pause_is_a_re_scheduling_event_saying_what_it_waits_for(
    spans: InMemorySpanExporter, execution_state: redis.Redis
) -> None:
    paused = httpx.Response(429, headers={"Retry-After": "3"})
    stack = make_stack(execution_state, [paused, reply()], zapi_rate_max_wait=0.5)
    stack.run(unique_body())
    (span,) = executions(spans)
    assert (span.attributes or {})["zapi.outcome"] == "deferred"
    events = events_of(span)
    assert events["deferred"]["http.response.status_code"] == 429
    assert events["re-scheduled"]["zapi.reason"] == "rate_limit"
    assert "Z-API is rate limiting" in str(events["re-scheduled"]["zapi.wait"])


def test_staleness_and_a_burial_are_events_and_errors(
    spans: InMemorySpanExporter, execution_state: redis.Redis
) -> None:
    stack = make_stack(execution_state, [reply()])
    shipped = unique_body(orderStatus="shipped")
    stack.run(shipped)
    late = unique_body(orderStatus="processing", orderRequestId=shipped["orderRequestId"])
    Stack(stack.deps, stack.at, stack.zapi).run(late)
    Stack(stack.deps, stack.at, stack.zapi).run({"phone": "5511987654321"})  # invalid
    delivered, stale, invalid = executions(spans)
    assert (delivered.attributes or {})["zapi.outcome"] == "delivered"
    assert "stale" in events_of(stale)
    assert (stale.attributes or {})["error.type"] == "StaleUpdateError"
    assert stale.status.status_code.name == "ERROR"
    assert events_of(invalid)["dead-lettered"]["error.type"] == "InvalidBodyError"
    assert "5511987654321" not in json.dumps([span.to_json() for span in finished(spans)])
