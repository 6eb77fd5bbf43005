"""Redis URLs as zapi-queue takes them: the schemes, and what a ``sentinel://`` URL says.

Three schemes, the same for the broker, the results and the state:

* ``redis://[:password@]host:port/db`` and ``rediss://`` (TLS): one server.
* ``sentinel://[:password@]host1:26379/db;sentinel://host2:26379;...``: kombu's form for Redis
  Sentinel. Each ``;``-separated URL names a Sentinel; the master they monitor is named apart
  (``REDIS_SENTINEL_MASTER``). The password and the database of the first URL are the master's;
  the Sentinels' own password, when they have one, is ``REDIS_SENTINEL_PASSWORD``. A client asks
  the Sentinels where the master is on every (re)connection, so it follows a failover by itself.

Redis Cluster is not among them: Celery's Redis broker does not support it (its keys and Lua
scripts span slots), and neither do zapi-queue's scripts.

These are the settings' rules: config/settings.py refuses another URL at start-up, the CLI names
what redis-py could not read. Turning a URL into a client is tasks/contract/redis_url.py's: the
producer distribution carries that module alone, and cannot import ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss", "sentinel")
SENTINEL_SCHEME = "sentinel"
#: The port a ``sentinel://`` URL without one means (Sentinel's default).
SENTINEL_PORT = 26379


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


def unsupported(
    url: str, *, any_scheme: bool = False, sentinel_master: str | None = None
) -> str | None:
    """Why zapi-queue refuses ``url`` as a setting, in words that never quote it, or None.
    Another scheme would silently lose reliable fetch (``redis+socket://``) or not work;
    ``any_scheme``: the result backend, which only a ``sentinel://`` form binds to these rules."""
    scheme = scheme_of(url)
    if not any_scheme and scheme not in SCHEMES:
        return (
            f"{scheme}:// is not supported: use redis://, rediss:// (TLS) or sentinel:// (Redis "
            "Sentinel, with REDIS_SENTINEL_MASTER); Redis Cluster is not supported by Celery's "
            "Redis broker (docs/deployment.md, 'Sentinel')"
        )
    if not is_sentinel(url):
        return None
    if not sentinel_master:
        return "a sentinel:// URL needs REDIS_SENTINEL_MASTER"
    try:
        SentinelURL.parse(url)
    except ValueError as exc:
        return str(exc)
    return None


def passwords(url: str) -> list[str]:
    """The passwords ``url`` holds (one per ``;``-separated URL), for redaction."""
    return [password for chunk in url.split(";") if (password := urlsplit(chunk).password)]
