"""Which Z-API instance a job sends through: its ``instance`` kwarg, an alias of the fleet's
configuration (config/instances.py), ``default`` when it names none."""

from __future__ import annotations

from config import Settings, get_settings
from config.instances import DEFAULT_ALIAS, Instance
from tasks.contract.errors import UnknownInstanceError


def instance_named(alias: object = None, settings: Settings | None = None) -> Instance:
    """The instance ``alias`` names in ``settings`` (default: the process's), or
    UnknownInstanceError listing the known."""
    name = DEFAULT_ALIAS if alias is None else alias
    known = (settings or get_settings()).instances()
    if isinstance(name, str) and name in known:
        return known[name]
    listed = ", ".join(sorted(known)) or "none (set ZAPI_INSTANCE_ID or ZAPI_INSTANCES)"
    raise UnknownInstanceError(f"unknown instance {name!r}: this fleet knows {listed}")


def default_instance() -> Instance:
    return instance_named(DEFAULT_ALIAS)
