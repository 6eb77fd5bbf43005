"""Lua scripts: ``.lua`` files beside their stores, called through builders that name their keys
and arguments.

A store's ``.lua`` file (``tasks/state/orders.lua`` beside ``orders.py``) is read once, as package
data. It has sections: ``--! library`` (functions other scripts compose) and ``--! script NAME``
(a script's body). A section uses its keys and arguments by name; :class:`Script` generates the
prelude that binds each name to its ``KEYS[n]`` or ``ARGV[n]`` and calls with keyword arguments
only, checked against the names: a missing, unexpected or misplaced one raises
:class:`ScriptCallError` before Redis is asked anything. Composing several stores' libraries in
one script (tasks/state/turns.py) needs no offsets: the builder assigns the positions.

The prelude's order: Redis' clock (``now=True``: :data:`LUA_NOW`), the keys, the libraries'
constants and functions, then the arguments (so a library function cannot capture one by
accident), then the body. A name the body misspells reads a global, which Redis refuses loudly.
"""

from __future__ import annotations

import functools
import importlib.resources
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import redis

#: Lua: Redis' clock in µs as ``now``, first in a script (composed scripts read it once). A script
#: that writes after ``TIME`` calls ``redis.replicate_commands()`` first: Redis 6.2 configured
#: with ``lua-replicate-commands`` off refuses writes after a non-deterministic command (a no-op
#: on Redis 7).
LUA_NOW = """redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

_SECTION = re.compile(r"^--! (library|script)(?: (\w+))?[ \t]*$", re.MULTILINE)
_FUNCTION = re.compile(r"^local function (\w+)\(([^)]*)\)", re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LUA_KEYWORDS = frozenset(
    [
        "and",
        "break",
        "do",
        "else",
        "elseif",
        "end",
        "false",
        "for",
        "function",
        "if",
        "in",
        "local",
        "nil",
        "not",
        "or",
        "repeat",
        "return",
        "then",
        "true",
        "until",
        "while",
    ]
)
#: Names the prelude itself defines (and ``client``, the call's own keyword).
_RESERVED = frozenset({"t", "now", "KEYS", "ARGV", "redis", "cjson", "client"})


class ScriptCallError(TypeError):
    """A script was called with keys or arguments that are not the ones it names."""


@functools.cache
def lua_sections(package: str, filename: str) -> Mapping[str, str]:
    """The sections of ``package``'s ``filename``: ``''`` for the library, else each script's
    name -> its text. Read once per process (package data: in the wheel, and found by an
    editable install)."""
    text = importlib.resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    marks = list(_SECTION.finditer(text))
    if not marks:
        raise ValueError(f"{package}/{filename}: no '--! library' or '--! script NAME' section")
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        name = (mark.group(2) or "") if mark.group(1) == "script" else ""
        if mark.group(1) == "script" and not name:
            raise ValueError(f"{package}/{filename}: a '--! script' section needs a name")
        if name in sections:
            raise ValueError(f"{package}/{filename}: section {name or 'library'!r} twice")
        end = following.start() if following is not None else len(text)
        sections[name] = text[mark.end() : end].strip("\n") + "\n"
    return sections


def lua_literal(value: int | str) -> str:
    """``value`` as a Lua literal (a constant of a library)."""
    if isinstance(value, int):
        return str(value)
    escaped = "".join(
        ch if ch.isprintable() and ch not in "\\'" else f"\\{ord(ch):03d}" for ch in value
    )
    return f"'{escaped}'"


def lua_pattern(prefix: str) -> str:
    """``prefix`` as a literal Lua pattern (its magic characters escaped)."""
    return re.sub(r"([\^$()%.\[\]*+\-?])", r"%\1", prefix)


def _check_names(where: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not _NAME.match(name) or name in _LUA_KEYWORDS or keyword.iskeyword(name):
            raise ValueError(f"{where}: {name!r} is not a usable name")
        if name in _RESERVED:
            raise ValueError(f"{where}: {name!r} is the prelude's own")
        if name in seen:
            raise ValueError(f"{where}: {name!r} is named twice")
        seen.add(name)


@functools.cache
def _params(
    library: str, source: str, function: str, prefix: str, without: tuple[str, ...]
) -> tuple[str, ...]:
    """:meth:`Library.params`, memoized: the source is parsed once per function and form."""
    for match in _FUNCTION.finditer(source):
        if match.group(1) == function:
            names = [name.strip() for name in match.group(2).split(",") if name.strip()]
            missing = set(without) - set(names)
            if missing:
                raise ValueError(f"{library}: {function}() has no {sorted(missing)}")
            return tuple(prefix + name for name in names if name not in without)
    raise ValueError(f"{library}: no local function {function}()")


@dataclass(frozen=True)
class Library:
    """Lua functions (a store's ``--! library`` section) bound to keys by name, for the scripts
    that compose them. ``constants`` become Lua locals before the functions."""

    name: str
    source: str
    keys: tuple[str, ...] = ()
    constants: Mapping[str, int | str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        package: str,
        filename: str,
        *,
        keys: Sequence[str] = (),
        constants: Mapping[str, int | str] | None = None,
    ) -> Library:
        return cls(
            f"{package}/{filename}",
            lua_sections(package, filename)[""],
            tuple(keys),
            dict(constants or {}),
        )

    def params(
        self, function: str, *, prefix: str = "", without: Sequence[str] = ()
    ) -> tuple[str, ...]:
        """The parameter names of the library's Lua ``function``, as its source declares them
        (less ``without``), each with ``prefix``: the arguments a composing script names.
        Read once per function (a hot path binds arguments at every call)."""
        return _params(self.name, self.source, function, prefix, tuple(without))

    def bind(
        self,
        function: str,
        values: Sequence[Any],
        *,
        prefix: str = "",
        without: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``values`` (a store's ``*_args``, in the function's order) by their names."""
        names = self.params(function, prefix=prefix, without=without)
        if len(values) != len(names):
            raise ScriptCallError(
                f"{self.name}: {function}() takes {len(names)} values ({', '.join(names)}), "
                f"got {len(values)}"
            )
        return dict(zip(names, values, strict=True))

    def bind_keys(self, values: Sequence[str]) -> dict[str, str]:
        """A store's key list (its ``keys()``), by the library's key names."""
        if len(values) != len(self.keys):
            raise ScriptCallError(
                f"{self.name}: takes keys {', '.join(self.keys)}, got {len(values)} keys"
            )
        return dict(zip(self.keys, values, strict=True))


class Script:
    """One Lua script: its body, its keys and arguments by name, the libraries it composes.

    ``rest_keys`` / ``rest_args`` name a variable tail (e.g. the keys a dead letter's storing
    deletes): the call passes it as a sequence, and the body finds its first position in
    ``<name>_from``. ``text`` is the whole script, for a caller that still passes positions."""

    def __init__(
        self,
        name: str,
        body: str,
        *,
        keys: Sequence[str] = (),
        args: Sequence[str] = (),
        libraries: Sequence[Library] = (),
        now: bool = False,
        rest_keys: str | None = None,
        rest_args: str | None = None,
        constants: Mapping[str, int | str] | None = None,
    ) -> None:
        self.name = name
        self.keys = tuple(key for library in libraries for key in library.keys) + tuple(keys)
        self.args = tuple(args)
        self._names = frozenset((*self.keys, *self.args))
        self.rest_keys = rest_keys
        self.rest_args = rest_args
        values = {k: v for library in libraries for k, v in library.constants.items()}
        values.update(constants or {})
        rests = [f"{rest}_from" for rest in (rest_keys, rest_args) if rest is not None]
        _check_names(name, [*self.keys, *self.args, *rests, *values])
        lines = [f"-- {name}: prelude generated by tasks/state/scripts.py"]
        if now:
            lines.append(LUA_NOW.rstrip("\n"))
        lines += [f"local {key} = KEYS[{n}]" for n, key in enumerate(self.keys, start=1)]
        if rest_keys is not None:
            lines.append(f"local {rest_keys}_from = {len(self.keys) + 1}")
        lines += [f"local {k} = {lua_literal(v)}" for k, v in values.items()]
        lines += [library.source.rstrip("\n") for library in libraries]
        lines += [f"local {arg} = ARGV[{n}]" for n, arg in enumerate(self.args, start=1)]
        if rest_args is not None:
            lines.append(f"local {rest_args}_from = {len(self.args) + 1}")
        self.text = "\n".join([*lines, body.rstrip("\n")]) + "\n"

    @classmethod
    def of(cls, package: str, filename: str, section: str, **options: Any) -> Script:
        """The ``--! script section`` of ``package``'s ``filename``."""
        return cls(f"{filename}:{section}", lua_sections(package, filename)[section], **options)

    @classmethod
    def beside(cls, module: str, section: str, **options: Any) -> Script:
        """The ``--! script section`` of the store's own file, named after its module
        (``__name__``): ``tasks/state/instances.lua`` for ``tasks.state.instances``."""
        package, _, store = module.rpartition(".")
        return cls.of(package, f"{store}.lua", section, **options)

    def positions(self, named: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV for keyword values; ScriptCallError unless they are exactly the
        script's names (and its rests, as sequences)."""
        try:  # the hot path: every name given, nothing else (checked below only if more)
            keys = [named[key] for key in self.keys]
            args = [named[arg] for arg in self.args]
        except KeyError:
            self._refuse(named)
        if len(named) > len(self.keys) + len(self.args):
            rests = {r for r in (self.rest_keys, self.rest_args) if r}
            if any(name not in rests and name not in self._names for name in named):
                self._refuse(named)
        for rest, into in ((self.rest_keys, keys), (self.rest_args, args)):
            if rest is not None:
                tail = named.get(rest, ())
                if isinstance(tail, (str, bytes)) or not isinstance(tail, Sequence):
                    raise ScriptCallError(f"script {self.name}: {rest} must be a sequence")
                into.extend(tail)
        return keys, args

    def _refuse(self, named: Mapping[str, Any]) -> NoReturn:
        wanted = {*self.keys, *self.args} | {r for r in (self.rest_keys, self.rest_args) if r}
        missing = [name for name in (*self.keys, *self.args) if name not in named]
        unexpected = sorted(set(named) - wanted)
        said = [f"missing {', '.join(missing)}"] if missing else []
        said += [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        raise ScriptCallError(f"script {self.name}: {'; '.join(said)}")

    def register(self, client: redis.Redis) -> BoundScript:
        """The script registered with ``client`` (redis-py's ``register_script``: EVALSHA,
        loading it on a NOSCRIPT)."""
        return BoundScript(self, client)


class BoundScript:
    """A :class:`Script` registered with a client; call it with keyword keys and arguments
    (``client=`` runs it on another client or a pipeline)."""

    def __init__(self, script: Script, client: redis.Redis) -> None:
        self.script = script
        self._registered = client.register_script(script.text)

    def __call__(self, *, client: Any = None, **named: Any) -> Any:
        keys, args = self.script.positions(named)
        return self._registered(keys=keys, args=args, client=client)
