"""JSON Schemas of the request bodies, generated from the pydantic models, for producers in
other languages: ``schemas/<endpoint>.json`` (the full body) and, for the updates,
``schemas/<endpoint>.short.json`` (the two-field form).

The models stay the source of truth; the files are kept in the repository so that a producer can
fetch them, and a test fails when they are not what this module generates (``make schemas``
rewrites them). tests/test_json_schemas.py runs the same valid and invalid bodies through both
and checks they agree. One difference JSON Schema cannot express: it treats ``1.0`` as an
integer, while the worker refuses a float ``quantity``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .endpoints import Endpoint

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _source(model: type[BaseModel]) -> str:
    """The model's file, as the repository names it (tasks/contract/<module>.py)."""
    return f"tasks/contract/{model.__module__.rpartition('.')[2]}.py"


def _document(model: type[BaseModel], endpoint: Endpoint, form: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": DIALECT,
        "$comment": f"Generated from {model.__name__} ({_source(model)}): make schemas",
        **schema,
        "description": f"The {form} body of POST /instances/{{id}}/token/{{token}}/{endpoint}, "
        f"enqueued as {endpoint.task_name}(body).",
    }


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every endpoint and form."""
    documents: dict[str, dict[str, Any]] = {}
    for endpoint in Endpoint:
        documents[f"{endpoint}.json"] = _document(endpoint.schema, endpoint, "full")
        if endpoint.short_schema is not None:
            documents[f"{endpoint}.short.json"] = _document(
                endpoint.short_schema,
                endpoint,
                "two-field (messageId, orderRequestId or orderKey, a status)",
            )
    return documents


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    """(Re)write every schema file in ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(path)
