"""Redis URLs as zapi-queue takes them, and the client each one means.

Three schemes, the same for the broker, the results and the state:

* ``redis://[:password@]host:port/db`` and ``rediss://`` (TLS): one server.
* ``sentinel://[:password@]host1:26379/db;sentinel://host2:26379;...``: kombu's form for Redis
  Sentinel. Each ``;``-separated URL names a Sentinel; the master they monitor is named apart
  (``REDIS_SENTINEL_MASTER``). The password and the database of the first URL are the master's;
  the Sentinels' own password, when they have one, is ``REDIS_SENTINEL_PASSWORD``. A client asks
  the Sentinels where the master is on every (re)connection, so it follows a failover by itself.

Redis Cluster is not among them: Celery's Redis broker does not support it (its keys and Lua
scripts span slots), and neither do zapi-queue's scripts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss", "sentinel")
SENTINEL_SCHEME = "sentinel"
#: The port a ``sentinel://`` URL without one means (Sentinel's default).
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
    def from_env(cls, environ: Mapping[str, str]) -> SentinelOptions | None:
        """``REDIS_SENTINEL_MASTER`` and ``REDIS_SENTINEL_PASSWORD`` (None: no master)."""
        master = environ.get("REDIS_SENTINEL_MASTER") or None
        return cls(master, environ.get("REDIS_SENTINEL_PASSWORD") or None) if master else None


def scheme_of(url: str) -> str:
    return urlsplit(url.split(";", 1)[0]).scheme.lower()


def is_sentinel(url: str) -> bool:
    return scheme_of(url) == SENTINEL_SCHEME


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A ``sentinel://`` URL, read: the Sentinels' addresses and the master's db and login."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Read kombu's ``;``-separated form; ValueError names what is wrong (never the URL,
        which may hold a password)."""
        chunks = [chunk.strip() for chunk in url.split(";") if chunk.strip()]
        sentinels = []
        for chunk in chunks:
            parts = urlsplit(chunk)
            if parts.scheme.lower() != SENTINEL_SCHEME:
                raise ValueError(
                    f"every ;-separated URL must be sentinel://, not {parts.scheme}://"
                )
            if not parts.hostname:
                raise ValueError("a sentinel:// URL without a host")
            sentinels.append((parts.hostname, parts.port or SENTINEL_PORT))
        first = urlsplit(chunks[0])
        path = first.path.strip("/")
        if path and not path.isdigit():
            raise ValueError("the database in a sentinel:// URL must be a number")
        return cls(
            sentinels=tuple(sentinels),
            db=int(path or 0),
            username=unquote(first.username) if first.username else None,
            password=unquote(first.password) if first.password else None,
        )


def redis_client(url: str, sentinel: SentinelOptions | None = None, **options: Any) -> Any:
    """A redis-py client for ``url``: ``redis.Redis.from_url`` for one server, a client of the
    Sentinels' current master for ``sentinel://`` (``sentinel`` must then be given).
    ``options`` are redis-py connection options (timeouts, retries...)."""
    import redis
    from redis.sentinel import Sentinel

    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    if sentinel is None:
        raise ValueError("a sentinel:// URL needs the master's name (REDIS_SENTINEL_MASTER)")
    parsed = SentinelURL.parse(url)
    sockets = {name: value for name, value in options.items() if name.startswith("socket_")}
    login = {"username": parsed.username, "password": parsed.password}
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels),
        sentinel_kwargs=sentinel.sentinel_kwargs(**sockets),
        db=parsed.db,
        **{name: value for name, value in login.items() if value is not None},
        **options,
    )
    return manager.master_for(  # type: ignore[no-untyped-call]
        sentinel.master, redis_class=redis.Redis
    )


def url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, in a few words that never quote it (it may hold a
    password), or None when redis-py and kombu can read it. ``redis:/host`` (one slash) and the
    like would otherwise fail deep inside redis-py with a traceback."""
    chunks = [c.strip() for c in url.split(";") if c.strip()] if is_sentinel(url) else [url]
    for chunk in chunks or [url]:
        scheme, sep, _ = chunk.partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            return "must start with redis://, rediss:// (TLS) or sentinel://"
        try:
            parts = urlsplit(chunk)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            return "its port must be a number from 1 to 65535"
        if not parts.hostname:
            return (
                "names no host (redis://:password@host:port/db; a / ? or # in the password "
                "must be written %2F %3F %23)"
            )
        path = parts.path.strip("/")
        if path and not path.isdigit():
            return "its database (after the host's /) must be a number"
    return None
