"""Validating a job's body and turning pydantic's error into one message a producer can read.

pydantic's ValidationError does not survive Celery's JSON result backend (it cannot be
rebuilt from its arguments), so the job fails with :class:`InvalidBodyError` whose text names
every offending field and the rule it broke, e.g.
``order.products[0].value: Input should be greater than or equal to 0``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from .endpoints import Endpoint
from .errors import InvalidBodyError
from .schemas import OrderUpdate, ShortUpdate, is_short_update

_M = TypeVar("_M", OrderUpdate, ShortUpdate)


def field_path(location: tuple[int | str, ...]) -> str:
    """``("order", "products", 0, "value")`` -> ``order.products[0].value``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def describe(error: ValidationError) -> list[str]:
    """One ``field: rule`` line per problem, in the order pydantic found them."""
    return [
        f"{field_path(tuple(item['loc']))}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def validate_body(endpoint: Endpoint, body: Any) -> OrderUpdate:
    """The validated full body for ``endpoint``, or InvalidBodyError naming every problem."""
    return _validated(endpoint.schema, endpoint, body, "body")


def validate_update(endpoint: Endpoint, body: Any) -> OrderUpdate | ShortUpdate:
    """A full body, or a short (two-field) update that the worker completes from the order
    book; InvalidBodyError naming every problem otherwise."""
    if is_short_update(body):
        return _validated(endpoint.short_schema, endpoint, body, "short update")
    return validate_body(endpoint, body)


def _validated(schema: type[_M], endpoint: Endpoint, body: Any, form: str) -> _M:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        problems = describe(exc)
        raise InvalidBodyError(
            f"invalid {endpoint.value} {form} ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}): " + "; ".join(problems)
        ) from None
