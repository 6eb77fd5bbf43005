"""The dead-letter filters as the console's pages take them: query strings and form fields in,
tasks/dead_letters.py's :class:`~tasks.dead_letters.Filters` out.

The same fields travel from the list page's query to the preview's hidden fields and on to the
action, as typed (times as ``YYYY-MM-DDTHH:MM``, UTC, what a ``datetime-local`` input sends),
so each step shows and acts on exactly what the operator chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from starlette.exceptions import HTTPException

from tasks.contract.redaction import mask_digit_runs
from tasks.dead_letters import Filters

#: The filter fields, in the order the pages show them.
FIELDS = ("error_type", "instance", "task", "q", "since", "until")
#: The longest value a filter field takes (a hostile query can be long).
MAX_VALUE = 200


def chosen(values: Mapping[str, str]) -> dict[str, str]:
    """The filter fields given (non-blank), stripped and cut to ``MAX_VALUE``."""
    picked = {name: (values.get(name) or "").strip()[:MAX_VALUE] for name in FIELDS}
    return {name: value for name, value in picked.items() if value}


def filters_of(fields: Mapping[str, str]) -> Filters:
    """The store's filters for these fields; HTTPException 400 for a time that is not one."""
    return Filters(
        task=fields.get("task"),
        error_type=fields.get("error_type"),
        contains=fields.get("q"),
        instance=fields.get("instance"),
        since=_epoch(fields, "since"),
        until=_epoch(fields, "until"),
    )


def _epoch(fields: Mapping[str, str], name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: not a time (YYYY-MM-DDTHH:MM, in UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def described(fields: Mapping[str, str]) -> str:
    """The filters in words, for the preview and the audit log; digit runs masked (a text
    filter may be a phone)."""
    if not fields:
        return "every dead letter"
    names = {
        "error_type": "error class",
        "instance": "instance",
        "task": "task",
        "q": "error text contains",
        "since": "failed since",
        "until": "failed before",
    }
    parts = [f"{names[n]} {mask_digit_runs(fields[n])!r}" for n in FIELDS if n in fields]
    return "dead letters with " + ", ".join(parts)
