"""The Redis client a URL means: ``redis://`` and ``rediss://`` for one server, ``sentinel://``
(kombu's ``;``-separated form) for the master its Sentinels monitor.

Which URLs zapi-queue accepts, and what each form says, is the settings' rule
(config/redis_url.py); this module only connects. It reads no more of a URL than its
scheme: redis-py reads a ``redis://`` URL, and kombu's ``url_to_parts`` each ``sentinel://``
one, the reader kombu's Sentinel broker uses on the same URL. The producer distribution
carries this module alone (tasks/contract/pyproject.toml), so it imports nothing of ours
outside this folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: The port a ``sentinel://`` URL without one means (Sentinel's default, as kombu has it).
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelOptions:
    """What a ``sentinel://`` URL does not say: the monitored master's name, and the
    Sentinels' own password if they require one."""

    master: str
    password: str | None = None

    def sentinel_kwargs(self, **socket_options: Any) -> dict[str, Any]:
        """Connection options for the Sentinels themselves (not the master)."""
        return {**socket_options, **({"password": self.password} if self.password else {})}

    def transport_options(self, **socket_options: Any) -> dict[str, Any]:
        """Celery's ``broker_transport_options`` / ``result_backend_transport_options`` for a
        ``sentinel://`` URL: which master, and how to log in to the Sentinels."""
        sentinels = self.sentinel_kwargs(**socket_options)
        return {"master_name": self.master, "sentinel_kwargs": sentinels}

    @classmethod
    def given(cls, master: str | None, password: str | None = None) -> SentinelOptions | None:
        """The options for ``master`` (None when no master is named: no Sentinel)."""
        return cls(master, password or None) if master else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SentinelOptions | None:
        """``REDIS_SENTINEL_MASTER`` and ``REDIS_SENTINEL_PASSWORD`` (None: no master)."""
        return cls.given(
            environ.get("REDIS_SENTINEL_MASTER"), environ.get("REDIS_SENTINEL_PASSWORD")
        )


def redis_client(url: str, sentinel: SentinelOptions | None = None, **options: Any) -> Any:
    """A redis-py client for ``url``: ``redis.Redis.from_url`` for one server, a client of the
    Sentinels' current master for ``sentinel://`` (``sentinel`` must then be given).
    ``options`` are redis-py connection options (timeouts, retries...)."""
    import redis
    from kombu.utils.url import url_to_parts
    from redis.sentinel import Sentinel

    if urlsplit(url.split(";", 1)[0]).scheme.lower() != "sentinel":
        return redis.Redis.from_url(url, **options)
    if sentinel is None:
        raise ValueError("a sentinel:// URL needs the master's name (REDIS_SENTINEL_MASTER)")
    chunks = [url_to_parts(chunk.strip()) for chunk in url.split(";") if chunk.strip()]
    first = chunks[0]
    # As kombu's Sentinel channel does: only the sentinel:// URLs name Sentinels.
    chunks = [chunk for chunk in chunks if chunk.scheme.lower() == "sentinel"]
    login = {"username": first.username, "password": first.password}
    sockets = {name: value for name, value in options.items() if name.startswith("socket_")}
    manager = Sentinel(  # type: ignore[no-untyped-call]
        [(chunk.hostname, chunk.port or SENTINEL_PORT) for chunk in chunks],
        sentinel_kwargs=sentinel.sentinel_kwargs(**sockets),
        db=int((first.path or "").strip("/") or 0),
        **{name: value for name, value in login.items() if value is not None},
        **options,
    )
    return manager.master_for(  # type: ignore[no-untyped-call]
        sentinel.master, redis_class=redis.Redis
    )
