"""Which Z-API instance a job sends through: its ``instance`` kwarg, an alias of the fleet's
configuration (config/instances.py), ``default`` when it names none."""

from __future__ import annotations

from config import get_settings
from config.instances import DEFAULT_ALIAS, Instance
from tasks.contract.errors import UnknownInstanceError


def instance_named(alias: object = None) -> Instance:
    """The configured instance ``alias`` names, or UnknownInstanceError listing the known."""
    name = DEFAULT_ALIAS if alias is None else alias
    known = get_settings().instances()
    if isinstance(name, str) and name in known:
        return known[name]
    listed = ", ".join(sorted(known)) or "none (set ZAPI_INSTANCE_ID or ZAPI_INSTANCES)"
    raise UnknownInstanceError(f"unknown instance {name!r}: this fleet knows {listed}")


def default_instance() -> Instance:
    return instance_named(DEFAULT_ALIAS)
