"""The protocol code of a Redis error reply (``OOM``, ``READONLY``, ``NOPERM``...), the same on
every server version, for log lines an operator can search.

redis-py takes the code off the message and raises a class for some codes (``OOM`` is
``OutOfMemoryError``). A command refused inside a Lua script came back before Redis 7 wrapped
in a generic error (``ERR Error running script (call to f_...): @user_script:1: ... -OOM
command not allowed ...``); from Redis 7 on it is the bare code. The message is worded
differently again. The code is what stays.
"""

from __future__ import annotations

import re

import redis

#: redis-py's classes for codes (each code's own class; ``NOAUTH``/``WRONGPASS`` share one).
_CLASS_CODES: tuple[tuple[type[redis.RedisError], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.ExecAbortError, "EXECABORT"),
)
#: A code as Redis writes one: capitals first in the reply (``WRONGTYPE Operation ...``).
_LEADING_CODE = re.compile(r"^([A-Z][A-Z_]{1,30})(?: |$)")
#: Redis < 7: the code of the command a script called, inside the script error's text.
_SCRIPT_CODE = re.compile(r"^Error running script \(.*?: -([A-Z][A-Z_]{1,30}) ")


def error_code(exc: BaseException) -> str | None:
    """``"OOM"`` for a Redis refusal for lack of memory, however it reached us; ``"ERR"`` for a
    generic error reply; None for what is no error reply (a lost connection, a timeout)."""
    if not isinstance(exc, redis.ResponseError):
        return None
    for cls, code in _CLASS_CODES:
        if isinstance(exc, cls):
            return code
    text = str(exc.args[0]) if exc.args else ""
    script = _SCRIPT_CODE.match(text)
    if script:
        return script.group(1)
    leading = _LEADING_CODE.match(text)
    if leading:  # a code redis-py has no class for: it left it in the message
        return leading.group(1)
    # redis-py 8 keeps the code it took off (``ERR``); earlier ones left nothing to tell.
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, str) and status else "ERR"


def describe(exc: BaseException) -> str:
    """``OOM: command not allowed when used memory > 'maxmemory'.`` for an error reply (its
    code first), ``ConnectionError: ...`` for anything else (its class)."""
    code = error_code(exc)
    return f"{code or type(exc).__name__}: {exc}"
