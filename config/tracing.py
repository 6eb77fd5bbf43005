"""Whether a process exports traces, decided by OpenTelemetry's own environment variables.

Tracing is opt-in: unset ``OTEL_TRACES_EXPORTER`` (or ``none``) means no tracer, no
OpenTelemetry import, no cost. That differs from the SDK's own default (``otlp``) on purpose:
a worker upgraded in place must not start posting spans to ``localhost:4318``.
``OTEL_SDK_DISABLED=true`` turns it off whatever the exporter says, as the specification has it.
Every other ``OTEL_*`` variable (endpoint, headers, sampler, resource, batching) is read by the
SDK itself, from the process environment (not from ``.env``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The exporters a process can use: ``otlp`` (OTLP over HTTP/protobuf, the ``otel`` extra)
#: and ``console`` (spans printed on stdout, for a look without a collector).
TRACE_EXPORTERS = ("otlp", "console")
#: The OpenTelemetry variables the docs name and docker-compose.yml passes to the webhook
#: receiver (the worker gets its whole ``ZAPI_ENV_FILE``); the SDK reads more of its own.
OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


def traces_exporters(environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (comma-separated, lower-cased), without
    ``none``; empty when tracing is off. A name this module does not know is kept, for the
    caller to refuse with a clear line."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = (name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(","))
    return [name for name in named if name and name != "none"]
