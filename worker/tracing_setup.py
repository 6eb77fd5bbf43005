"""Turn tracing on in a process we run, when OpenTelemetry's variables ask for it.

The worker (each process that runs jobs: the main one under the shipped threads pool, each
child under prefork) and the webhook receiver call :func:`start_tracing` at start and
:func:`stop_tracing` at exit, which flushes the spans still batched. Which exporters come from
``OTEL_TRACES_EXPORTER`` (config/tracing.py); the SDK reads the rest (endpoint, headers,
sampler, resource, batch sizes) from the environment as it always does. Without the ``otel``
extra installed, a process asked to trace says so in one line and runs without tracing.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from config.tracing import TRACE_EXPORTERS, traces_exporters
from tasks import tracing
from worker.logging import known_secrets

logger = logging.getLogger("zapi_queue.tracing")

#: The provider this process built (an SDK TracerProvider), and the process it was built in:
#: a forked child builds its own (the batch processor's thread does not survive a fork).
_provider: Any = None
_built_in_pid: int | None = None
#: The most a stopping process waits for its last spans' export.
STOP_SECONDS = 3.0


def start_tracing(service_name: str) -> bool:
    """Build the tracer provider if the environment asks for traces; True when tracing.
    ``service_name``: the resource's ``service.name`` unless ``OTEL_SERVICE_NAME`` or
    ``OTEL_RESOURCE_ATTRIBUTES`` names one."""
    global _provider, _built_in_pid
    if _provider_here() is not None:
        return True
    exporters = traces_exporters()
    if not exporters:
        return False
    unknown = [name for name in exporters if name not in TRACE_EXPORTERS]
    if unknown:
        logger.warning(
            "OTEL_TRACES_EXPORTER names %s, which zapi-queue does not ship (it ships %s): "
            "tracing is off",
            ", ".join(unknown),
            ", ".join(TRACE_EXPORTERS),
        )
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        logger.warning(
            "OTEL_TRACES_EXPORTER is set but OpenTelemetry's SDK is not installed "
            "(pip install 'zapi-queue[otel]'): tracing is off"
        )
        return False
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, ConsoleSpanExporter)))
    trace.set_tracer_provider(provider)
    _provider, _built_in_pid = provider, os.getpid()
    tracing.enable(provider.get_tracer("zapi_queue"), known_secrets())
    logger.info(
        "tracing on: %s, service %s", ", ".join(exporters), resource.attributes[SERVICE_NAME]
    )
    return True


def _exporter(name: str, console: Any) -> Any:
    if name == "console":
        return console()
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        logger.warning("OTLP protocol %s is not shipped: exporting over http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _provider_here() -> Any:
    """The provider this process built, or None (none built, or built before a fork)."""
    return _provider if _built_in_pid == os.getpid() else None


def flush_tracing(seconds: float) -> None:
    """Export what is batched, for at most ``seconds`` (a process about to ``os._exit``)."""
    provider = _provider_here()
    if provider is not None:
        provider.force_flush(timeout_millis=int(seconds * 1000))


def stop_tracing(seconds: float = STOP_SECONDS) -> None:
    """Export what is batched and stop (at a process's exit), for at most ``seconds``: a
    collector that does not answer must not hold a stopping worker past its grace period (the
    exporter retries for a minute), so the SDK's shutdown runs in a thread waited for that
    long."""
    global _provider
    tracing.disable()
    provider, _provider = _provider_here(), None
    if provider is None:
        return
    stopping = threading.Thread(target=provider.shutdown, name="tracing shutdown", daemon=True)
    stopping.start()
    stopping.join(seconds)
    if stopping.is_alive():
        logger.warning("tracing: spans not exported within %gs of the stop were dropped", seconds)


@worker_init.connect
@worker_process_init.connect
def trace_the_worker(**_: Any) -> None:
    start_tracing("zapi-queue-worker")


@worker_shutdown.connect
@worker_process_shutdown.connect
def flush_the_worker_spans(**_: Any) -> None:
    stop_tracing()
