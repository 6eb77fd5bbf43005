"""Many WhatsApp numbers in one deployment: the Z-API instances a fleet sends through.

The single-instance variables (``ZAPI_INSTANCE_ID``, ``ZAPI_INSTANCE_TOKEN``,
``ZAPI_CLIENT_TOKEN``, ``ZAPI_RATE_LIMIT``, ``ZAPI_RATE_BURST``) define the instance
``default``, unchanged. More come from ``ZAPI_INSTANCES`` (or ``ZAPI_INSTANCES_FILE``, for
Docker and Kubernetes secrets), a JSON object mapping an alias to its settings::

    {"store-sp": {"instance_id": "3C...", "instance_token": "...", "rate_limit": 2},
     "store-rj": {"instance_id": "3D...", "instance_token": "...", "client_token": "..."}}

``client_token``, ``rate_limit`` and ``rate_burst`` default to the global ones. An alias is
``[a-z0-9_-]{1,40}``; a bad entry stops the process with a line naming the alias and the field.
Every token is a secret: redacted from logs and errors like the single-instance ones.
:func:`configured_instances` puts both together, once, for ``Settings.instances()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

if TYPE_CHECKING:
    from config.settings import Settings

DEFAULT_ALIAS = "default"
ALIAS_PATTERN = re.compile(r"[a-z0-9_-]{1,40}")


def alias_of(kwargs: Any) -> str:
    """The instance alias a job's kwargs name: ``default`` when they name none (or not a
    string), as the worker routes it (tasks/instances.py)."""
    alias = kwargs.get("instance") if isinstance(kwargs, dict) else None
    return alias if isinstance(alias, str) else DEFAULT_ALIAS


NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class InstanceEntry(BaseModel):
    """One entry of ZAPI_INSTANCES, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_id: NonBlank
    instance_token: SecretStr = Field(min_length=1)
    client_token: SecretStr | None = Field(default=None, min_length=1)
    rate_limit: Annotated[float, Field(gt=0, le=10_000)] | None = None
    rate_burst: Annotated[int, Field(ge=1, le=1000)] | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    """A Z-API instance the fleet sends through: what a job's ``instance`` kwarg names."""

    alias: str
    label: str
    """How logs and metrics name it: the alias (``ZAPI_INSTANCE_ALIAS`` or the id for
    ``default``, as before there were several). Never a token."""
    instance_id: str
    instance_token: SecretStr
    client_token: SecretStr
    rate_limit: float
    rate_burst: int

    def secrets(self) -> tuple[str, ...]:
        return (self.instance_token.get_secret_value(), self.client_token.get_secret_value())


def parse_instances(raw: str) -> dict[str, InstanceEntry]:
    """ZAPI_INSTANCES' entries by alias, or ValueError naming the alias and the field."""
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ZAPI_INSTANCES: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error.
        raise ValueError(  # noqa: TRY004
            "ZAPI_INSTANCES: must be a JSON object mapping an alias to its settings"
        )
    entries = {}
    for alias, entry in data.items():
        if not ALIAS_PATTERN.fullmatch(alias):
            raise ValueError(f"ZAPI_INSTANCES: alias {alias!r}: must match [a-z0-9_-]{{1,40}}")
        try:
            entries[alias] = InstanceEntry.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'entry'}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False)
            )
            raise ValueError(f"ZAPI_INSTANCES: {alias}: {problems}") from None
    return entries


def configured_instances(
    settings: Settings, entries: Mapping[str, InstanceEntry]
) -> dict[str, Instance]:
    """Every instance by alias: ``default`` (the single-instance variables, when complete) and
    ``entries``, each with the global Client-Token and rates where it gives none. An entry
    without a Client-Token anywhere is left out: :func:`client_token_problem` names it."""
    found: dict[str, Instance] = {}
    if settings.zapi_instance_id and settings.zapi_instance_token and settings.zapi_client_token:
        found[DEFAULT_ALIAS] = Instance(
            alias=DEFAULT_ALIAS,
            label=settings.instance_alias,
            instance_id=settings.zapi_instance_id,
            instance_token=settings.zapi_instance_token,
            client_token=settings.zapi_client_token,
            rate_limit=settings.zapi_rate_limit,
            rate_burst=settings.zapi_rate_burst,
        )
    for alias, entry in entries.items():
        client_token = entry.client_token or settings.zapi_client_token
        if client_token is None:
            continue
        found[alias] = Instance(
            alias=alias,
            label=alias,
            instance_id=entry.instance_id,
            instance_token=entry.instance_token,
            client_token=client_token,
            rate_limit=entry.rate_limit or settings.zapi_rate_limit,
            rate_burst=entry.rate_burst or settings.zapi_rate_burst,
        )
    return found


def client_token_problem(
    entries: Mapping[str, InstanceEntry], client_token: SecretStr | None
) -> str | None:
    """The entries that have no Client-Token, neither their own nor the global one."""
    missing = [
        alias
        for alias, entry in entries.items()
        if entry.client_token is None and client_token is None
    ]
    if missing:
        return (
            f"ZAPI_INSTANCES: {', '.join(missing)}: client_token: required (or set "
            "ZAPI_CLIENT_TOKEN for every instance)"
        )
    return None
