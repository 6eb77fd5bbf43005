"""The keyword arguments of a job and the shape of its call, each with its type and range.

A task of the contract takes one positional argument, the body, and optionally the kwargs
below (:data:`OPTIONAL_KWARGS`, and those its registry entry adds: ``order_key`` for
``zapi.send_order``). They come from any producer in any language, as JSON, so each is
checked as strictly as the body: a JSON ``true`` is no sequence, ``"yes"`` no ``force``. Every
number that reaches Redis is bounded here, before any script sees it (a ``sequence`` becomes a
sorted-set score). A wrong call fails its job at once with :class:`InvalidBodyError` naming
each kwarg and rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .endpoints import BY_TASK_NAME
from .errors import InvalidBodyError
from .order_key import order_key_problem

#: ``sequence`` is a position among an order's updates, kept as a Redis score (a double):
#: below 2^53 it stays exact.
MAX_SEQUENCE = 2**53
MAX_IDEMPOTENCY_KEY = 200
#: An instance alias, as config/instances.py allows them.
ALIAS = re.compile(r"[a-z0-9_-]{1,40}")
#: The keyword arguments a producer may pass, besides the body (``body`` itself is accepted
#: as a kwarg too, instead of the positional argument).
OPTIONAL_KWARGS = ("idempotency_key", "sequence", "force", "instance")


def accepted_kwargs(task_name: str) -> tuple[str, ...]:
    """The kwargs ``task_name`` takes: the common ones, then its own (its registry entry)."""
    endpoint = BY_TASK_NAME.get(task_name)
    return OPTIONAL_KWARGS + (endpoint.spec.kwargs if endpoint is not None else ())


def valid_sequence(value: Any) -> bool:
    """Whether ``value`` is a ``sequence`` the contract accepts (None is no sequence)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_SEQUENCE


def _problems(kwargs: dict[str, Any]) -> list[str]:
    problems = []
    key = kwargs.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        problems.append(
            f"idempotency_key: must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} "
            "characters"
        )
    sequence = kwargs.get("sequence")
    if sequence is not None and not valid_sequence(sequence):
        problems.append(
            f"sequence: must be an integer from 0 to 2^53-1 ({MAX_SEQUENCE - 1}), not a "
            "boolean, or left out"
        )
    for flag in ("force", "supersede"):
        value = kwargs.get(flag)
        if value is not None and not isinstance(value, bool):
            problems.append(f"{flag}: must be true or false (a JSON boolean), or left out")
    instance = kwargs.get("instance")
    if instance is not None and not (isinstance(instance, str) and ALIAS.fullmatch(instance)):
        problems.append("instance: must be an instance alias ([a-z0-9_-], 1 to 40 characters)")
    order_key = kwargs.get("order_key")
    if order_key is not None and (problem := order_key_problem(order_key)) is not None:
        problems.append(f"order_key: {problem}")
    return problems


@dataclass(frozen=True, slots=True)
class Call:
    """A job's arguments, checked: one body, and only the known keyword arguments."""

    body: Any
    idempotency_key: str | None = None
    sequence: int | None = None
    force: bool = False
    instance: str | None = None
    #: The shop's own order id (``zapi.send_order`` only).
    order_key: str | None = None
    #: Whether a newer update may supersede this one (the update tasks; None: the setting).
    supersede: bool | None = None

    @classmethod
    def of(cls, task_name: str, args: Any, kwargs: Any) -> Call:
        """The call, or InvalidBodyError naming everything wrong with it: Celery would
        otherwise fail a wrong shape with a bare TypeError (no body) or a misleading message
        (a second positional body taken for the idempotency key)."""
        accepted = accepted_kwargs(task_name)
        expects = (
            f"{task_name} takes one positional argument, the body (Z-API's JSON body, or the "
            f"two-field form), and optionally the kwargs {', '.join(accepted)}"
        )
        positional = list(args) if isinstance(args, list | tuple) else [args]
        named = dict(kwargs) if isinstance(kwargs, dict) else {}
        problems = []
        unknown = sorted(str(name) for name in set(named) - set(accepted) - {"body"})
        if unknown:
            problems.append(f"got unknown kwargs: {', '.join(unknown)}")
        if "body" in named:
            positional.insert(0, named.pop("body"))
        if len(positional) != 1:
            count = len(positional)
            problems.append(f"got {count} positional argument{'' if count == 1 else 's'}")
        problems += _problems(named)
        if problems:
            raise InvalidBodyError(f"{expects}; {'; '.join(problems)}")
        return cls(
            positional[0],
            idempotency_key=named.get("idempotency_key"),
            sequence=named.get("sequence"),
            force=named.get("force") is True,
            instance=named.get("instance"),
            order_key=named.get("order_key"),
            supersede=named.get("supersede"),
        )


def check_kwargs(kwargs: dict[str, Any], task_name: str | None = None) -> None:
    """InvalidBodyError naming each kwarg outside its type or range, and, given the task, each
    kwarg that task does not take (the producer's check)."""
    problems = _problems(kwargs)
    if task_name is not None:
        accepted = accepted_kwargs(task_name)
        problems += [
            f"{name}: {task_name} takes no {name}" for name in kwargs if name not in accepted
        ]
    if problems:
        raise InvalidBodyError("; ".join(problems))
