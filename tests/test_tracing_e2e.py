"""One trace per order update, end to end: a shop's process that traces enqueues through the
producer package, a real worker retries and sends to the fake Z-API, the fake's delivery
callbacks reach the real webhook receiver, and every span is exported over OTLP/HTTP to a
stand-in collector (devtools/otlp_receiver.py) that decodes them with opentelemetry-proto.

What must hold: one trace id from the shop's span through each execution, its Z-API request
and the callbacks (sent, received, read), with the parents and links a reader expects; a bare
``send_task`` with a ``traceparent`` header continues the given trace; no secret, phone or body
text in any exported byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.otlp_receiver import OtlpReceiver, ReceivedSpan
from devtools.zapi_sim import Fault
from tests.bodies import unique_body
from tests.conftest import CLIENT_TOKEN, INSTANCE_TOKEN
from tests.faults import WebhookStack

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "trace-webhook-secret-4f1d9c"
PHONE = "5511987654321"
SHOP_SPAN = "checkout"
#: A shop's own process: its SDK exports to the same collector, its job goes through the
#: producer package inside its own span.
SHOP = """
import json, os, sys
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource({"service.name": "shop"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

from tasks.contract.producer import Producer

producer = Producer()
with trace.get_tracer("shop").start_as_current_span("checkout") as span:
    job = producer.enqueue_status_update(json.loads(sys.argv[1]))
provider.shutdown()
print(json.dumps({"job": job, "trace": format(span.get_span_context().trace_id, "032x")}))
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[WebhookStack]:
    logs = tmp_path_factory.mktemp("tracing")
    with WebhookStack(
        logs,
        webhook_secret=WEBHOOK_SECRET,
        otel_traces_exporter="otlp",
        otel_exporter_otlp_endpoint=receiver.endpoint,
        otel_bsp_schedule_delay="100",
        zapi_log_format="json",
    ) as running:
        # Callbacks after the worker recorded the reply: they join the trace through it.
        running.sim.callback_delay = 0.5
        running.worker()
        yield running


def by_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id]


def named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name.startswith(prefix)]


def shop_enqueues(
    stack: WebhookStack, receiver: OtlpReceiver, body: dict[str, object]
) -> dict[str, str]:
    env = {**os.environ, **stack.env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    done = subprocess.run(
        [sys.executable, "-c", SHOP, json.dumps(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_one_trace_from_the_shop_through_a_retry_to_the_read_receipt(
    stack: WebhookStack, receiver: OtlpReceiver
) -> None:
    body = unique_body(phone=PHONE, message="Seu pedido saiu para entrega")
    stack.sim.script(str(body["messageId"]), Fault(status=503))
    shop = shop_enqueues(stack, receiver, body)
    reply = stack.producer.AsyncResult(shop["job"]).get(timeout=30)

    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = by_trace(spans, shop["trace"])
        read = named(mine, "MessageStatusCallback: read")
        return len(named(mine, "process ")) >= 2 and len(read) == 1

    spans = by_trace(receiver.wait_for(complete), shop["trace"])
    (checkout,) = named(spans, SHOP_SPAN)
    (publish,) = named(spans, "send zapi.order_status_update")
    assert (publish.kind, publish.parent_span_id) == ("PRODUCER", checkout.span_id)
    assert publish.attributes["messaging.message.id"] == shop["job"]

    executions = sorted(named(spans, "process "), key=lambda span: span.attributes["zapi.attempt"])
    assert [e.attributes["zapi.outcome"] for e in executions] == ["retried", "delivered"]
    for execution in executions:  # each execution, retries included, a child of the publish
        assert (execution.kind, execution.service) == ("CONSUMER", "zapi-queue-worker")
        assert execution.parent_span_id == publish.span_id
        assert execution.attributes["zapi.order_id"] == body["orderRequestId"]
        assert execution.attributes["zapi.instance_alias"] == "default"
        assert execution.attributes["zapi.instance"] == stack.sim.instance_id  # the label
    first = dict(executions[0].events)
    assert first["retry"]["http.response.status_code"] == 503
    assert first["re-scheduled"]["zapi.reason"] == "ZapiUnavailableError"
    assert dict(executions[1].events)["delivered"]["http.response.status_code"] == 200

    requests = named(spans, "POST /instances/{instance}/token/{token}/order-status-update")
    assert sorted(r.attributes["http.response.status_code"] for r in requests) == [200, 503]
    for request in requests:
        assert request.kind == "CLIENT"
        assert request.parent_span_id in {e.span_id for e in executions}
        assert "url.full" not in request.attributes

    delivering = executions[-1]
    callbacks = [span for span in spans if "Callback: " in span.name]
    assert sorted(span.name for span in callbacks) == [
        "DeliveryCallback: sent",
        "MessageStatusCallback: read",
        "MessageStatusCallback: received",
        "MessageStatusCallback: sent",
    ]
    served = {span.span_id: span for span in receiver.spans() if span.kind == "SERVER"}
    for callback in callbacks:
        assert callback.service == "zapi-queue-webhook"
        assert callback.parent_span_id == delivering.span_id
        assert callback.attributes["zapi.message_id"] == reply["messageId"]
        ((_, linked),) = callback.links  # the webhook request that brought it
        assert served[linked].name == "POST /webhooks/zapi/{secret}"

    exported = receiver.raw()
    for never in (INSTANCE_TOKEN, CLIENT_TOKEN, WEBHOOK_SECRET, PHONE, "saiu para entrega"):
        assert never.encode() not in exported, never


def bare_job_in(
    stack: WebhookStack, receiver: OtlpReceiver, trace_id: str, parent: str
) -> tuple[str, ReceivedSpan]:
    """A bare ``send_task`` carrying ``traceparent`` (``trace_id``, ``parent``), done: its job
    id and its execution's span."""
    job = stack.producer.send_task(
        "zapi.order_status_update",
        args=[unique_body()],
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
    )
    job.get(timeout=30)
    spans = receiver.wait_for(lambda spans: bool(named(by_trace(spans, trace_id), "process ")))
    (execution,) = named(by_trace(spans, trace_id), "process ")
    return job.id, execution


def test_a_bare_send_task_with_a_traceparent_continues_that_trace(
    stack: WebhookStack, receiver: OtlpReceiver
) -> None:
    parent = "00f067aa0ba902b7"
    job_id, execution = bare_job_in(stack, receiver, "4bf92f3577b34da6a3ce929d0e0e4736", parent)
    assert execution.parent_span_id == parent
    assert execution.attributes["messaging.message.id"] == job_id


def test_the_worker_logs_carry_the_trace_and_span_ids(
    stack: WebhookStack, receiver: OtlpReceiver
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    job_id, execution = bare_job_in(stack, receiver, trace_id, "b7ad6b7169203331")
    log = Path(stack.workers[0].log_path).read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    attempts = [line for line in lines if line.get("job_id") == job_id]
    assert attempts, "no JSON log line of the job"
    assert {(line["trace_id"], line["span_id"]) for line in attempts} == {
        (trace_id, execution.span_id)
    }
