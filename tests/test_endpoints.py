"""The endpoint registry (tasks/contract/endpoints.py) is what every part that lists endpoints
reads: a task per entry, the CLI's kinds, the fake Z-API's routes, the JSON Schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.zapi_sim import ENDPOINTS as FAKE_ROUTES
from tasks.contract.endpoints import (
    BY_CLI_KIND,
    BY_TASK_NAME,
    REGISTRY,
    TASK_NAMES,
    UPDATE_ENDPOINTS,
    Endpoint,
)
from tasks.contract.job_kwargs import accepted_kwargs
from tasks.contract.json_schemas import json_schemas
from tasks.contract.schemas import OrderUpdate
from worker.celery_app import app
from worker.cli.jobs import ENDPOINTS as CLI_KINDS

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_every_endpoint_has_one_entry_and_the_names_are_the_contracts() -> None:
    assert set(REGISTRY) == set(Endpoint)
    assert TASK_NAMES == {
        Endpoint.ORDER_STATUS_UPDATE: "zapi.order_status_update",
        Endpoint.ORDER_PAYMENT_UPDATE: "zapi.order_payment_update",
        Endpoint.SEND_ORDER: "zapi.send_order",
    }
    assert len(BY_TASK_NAME) == len(BY_CLI_KIND) == len(Endpoint)  # no name given twice


@pytest.mark.parametrize("endpoint", list(Endpoint), ids=str)
def test_each_part_that_lists_endpoints_reads_the_registry(endpoint: Endpoint) -> None:
    spec = endpoint.spec
    task = app.tasks[spec.task_name]
    assert task.__doc__ == spec.summary
    assert CLI_KINDS[spec.cli_kind] is endpoint
    assert endpoint.value in FAKE_ROUTES
    files = {f"{endpoint}.json"} | ({f"{endpoint}.short.json"} if spec.short_schema else set())
    assert set(json_schemas()) >= files
    assert all((SCHEMAS / name).is_file() for name in files)


def test_the_updates_have_a_short_form_and_send_order_has_none() -> None:
    assert UPDATE_ENDPOINTS == (Endpoint.ORDER_STATUS_UPDATE, Endpoint.ORDER_PAYMENT_UPDATE)
    spec = Endpoint.SEND_ORDER.spec
    assert (spec.short_schema, spec.short_field) == (None, None)
    assert not issubclass(spec.schema, OrderUpdate)
    assert "send-order.short.json" not in json_schemas()


@pytest.mark.parametrize("endpoint", UPDATE_ENDPOINTS, ids=str)
def test_the_short_field_is_a_field_of_both_forms(endpoint: Endpoint) -> None:
    spec = endpoint.spec
    assert spec.short_schema is not None
    for schema in (spec.schema, spec.short_schema):
        aliases = {field.alias or name for name, field in schema.model_fields.items()}
        assert spec.short_field in aliases, (schema.__name__, sorted(aliases))


def test_only_send_order_takes_an_order_key() -> None:
    assert [e for e in Endpoint if "order_key" in accepted_kwargs(e.task_name)] == [
        Endpoint.SEND_ORDER
    ]
    assert "order_key" not in accepted_kwargs("zapi.no_such_task")
