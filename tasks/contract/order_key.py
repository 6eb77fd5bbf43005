"""The shop's own order id (``order_key``): one rule for the kwarg of ``zapi.send_order`` and the
``orderKey`` that names an order in the short forms of the updates.

A shop thinks in its own order numbers; the worker keys an order's message, its Z-API ids and
its updates by that text (tasks/state keeps it escaped in its Redis keys). So the text is
checked once, the same way at both doors: 1 to :data:`ORDER_KEY_MAX_LENGTH` characters, no
control character (a newline in a key would split a log line), and no leading or trailing
whitespace (``"shop-1042 "`` would silently name another order than ``"shop-1042"``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

from .characters import CONTROL, SPACE

ORDER_KEY_MAX_LENGTH = 100
#: The rule as a JSON Schema pattern (the length is minLength/maxLength). ``(?![\s\S])`` ends
#: it: Python's ``$`` would let a final newline through.
ORDER_KEY_PATTERN = rf"^(?![{SPACE}])[^{CONTROL}]*(?<![{SPACE}])(?![\s\S])"
_ORDER_KEY = re.compile(ORDER_KEY_PATTERN)
ORDER_KEY_RULE = (
    f"must be the shop's own order id: 1 to {ORDER_KEY_MAX_LENGTH} characters, no control "
    "character, no leading or trailing whitespace"
)


def order_key_problem(value: Any) -> str | None:
    """Why ``value`` is no order key (:data:`ORDER_KEY_RULE`), or None when it is one."""
    if (
        isinstance(value, str)
        and 0 < len(value) <= ORDER_KEY_MAX_LENGTH
        and _ORDER_KEY.match(value) is not None
    ):
        return None
    return ORDER_KEY_RULE


def _checked(value: str) -> str:
    if order_key_problem(value) is not None:
        raise PydanticCustomError("order_key_format", ORDER_KEY_RULE)
    return value


#: ``orderKey`` in a body: a strict string, then the rule (lengths first, pydantic's wording).
OrderKey = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=ORDER_KEY_MAX_LENGTH),
    AfterValidator(_checked),
    Field(
        description="The shop's own order id, as given to zapi.send_order's order_key",
        json_schema_extra={"pattern": ORDER_KEY_PATTERN},
    ),
]
