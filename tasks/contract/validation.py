"""Validating a job's body and turning pydantic's error into one message a producer can read.

pydantic's ValidationError does not survive Celery's JSON result backend (it cannot be
rebuilt from its arguments), so the job fails with :class:`InvalidBodyError` whose text names
every offending field and the rule it broke, e.g.
``order.products[0].value: Input should be greater than or equal to 0``.

The text holds field names and rules, never a field's value. A field name the producer made up
(an unknown field is named in its error) is shown cut to :data:`NAME_SHOWN` characters, with
anything that could be a phone number masked, and at most :data:`PROBLEMS_SHOWN` problems are
listed (then how many more): the text is stored in the result backend and shown in Flower, so a
hostile body must not make it huge or carry a phone through a key.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import ValidationError

from .endpoints import Endpoint
from .errors import InvalidBodyError
from .redaction import mask_phone
from .schemas import OrderUpdate, ShortUpdate, ZapiModel, is_short_update
from .send_order import SendOrder

_M = TypeVar("_M", bound=ZapiModel)

#: Problems listed in one error text; the rest are counted.
PROBLEMS_SHOWN = 50
#: Characters of a field name shown in an error text.
NAME_SHOWN = 64
#: Eight or more digits, with the formatting a phone may have between them.
_DIALABLE = re.compile(r"[0-9](?:[\s+\-.()]*[0-9]){7,}")


def _shown_name(name: str) -> str:
    """A field name as an error text shows it: phone-like digit runs masked, printable, short."""
    name = _DIALABLE.sub(lambda found: mask_phone(re.sub(r"[^0-9]", "", found[0])), name)
    if not name.isprintable():
        name = name.encode("unicode_escape").decode("ascii")
    return name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 3] + "..."


def field_path(location: tuple[int | str, ...]) -> str:
    """``("order", "products", 0, "value")`` -> ``order.products[0].value``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = _shown_name(str(part))
            path += f".{name}" if path else name
    return path or "body"


def describe(error: ValidationError) -> list[str]:
    """One ``field: rule`` line per problem, in the order pydantic found them."""
    return [
        f"{field_path(tuple(item['loc']))}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def summary(problems: list[str]) -> str:
    """The problems joined with ``; ``, the first :data:`PROBLEMS_SHOWN` of them."""
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    hidden = len(problems) - PROBLEMS_SHOWN
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def form_of(endpoint: Endpoint, body: Any) -> tuple[type[ZapiModel], str]:
    """The schema ``body`` is checked against for ``endpoint``, and the form's name: the short
    form when the endpoint has one and the body is one, else the full body."""
    short = endpoint.short_schema
    if short is not None and is_short_update(body):
        return short, "short update"
    return endpoint.schema, "body"


def validate_request(endpoint: Endpoint, body: Any) -> ZapiModel:
    """The validated body for any endpoint, in either form (what a producer checks before it
    enqueues); InvalidBodyError naming every problem otherwise."""
    schema, form = form_of(endpoint, body)
    return _validated(schema, endpoint, body, form)


def validate_body(endpoint: Endpoint, body: Any) -> OrderUpdate:
    """The validated full body for ``endpoint`` (an update's), or InvalidBodyError naming every
    problem."""
    return _validated(_update_schema(endpoint), endpoint, body, "body")


def validate_update(endpoint: Endpoint, body: Any) -> OrderUpdate | ShortUpdate | SendOrder:
    """A job's body, typed: a full body (:func:`validate_full`), or a short (two-field) update
    that the worker completes from the order book; InvalidBodyError naming every problem
    otherwise."""
    short = endpoint.short_schema
    if short is not None and is_short_update(body):
        return _validated(short, endpoint, body, "short update")
    return validate_full(endpoint, body)


def validate_full(endpoint: Endpoint, body: Any) -> OrderUpdate | SendOrder:
    """The full body of any endpoint the worker sends, typed by its kind: an order update, or
    the order message itself; InvalidBodyError naming every problem otherwise."""
    if endpoint is Endpoint.SEND_ORDER:
        return validate_send_order(body)
    return validate_body(endpoint, body)


def validate_send_order(body: Any) -> SendOrder:
    """The validated send-order body, or InvalidBodyError naming every problem."""
    return _validated(SendOrder, Endpoint.SEND_ORDER, body, "body")


def _update_schema(endpoint: Endpoint) -> type[OrderUpdate]:
    """The endpoint's update schema; TypeError for an endpoint that takes no update (a bug
    in the caller: :func:`validate_request` takes every endpoint)."""
    schema = endpoint.schema
    if not issubclass(schema, OrderUpdate):
        raise TypeError(f"{endpoint} takes no order update: validate it with validate_request")
    return schema


def _validated(schema: type[_M], endpoint: Endpoint, body: Any, form: str) -> _M:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        problems = describe(exc)
        raise InvalidBodyError(
            f"invalid {endpoint.value} {form} ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}): " + summary(problems)
        ) from None
