"""The configuration reference, generated from :class:`config.settings.Settings`.

The docs site's configuration page (docs/configuration.md) is built from this at every
``mkdocs build`` (docs/hooks.py), so it cannot drift from the code: one row per field with its
environment variable, type, default, constraint and description. Descriptions come from the
field's ``Field(description=...)`` or, as most of ``Settings`` has them, the docstring under
the field. ``python -m devtools.settings_reference`` prints the table.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, HttpUrl, SecretStr
from pydantic.fields import FieldInfo

from config.secret_files import is_secret
from config.settings import Settings

#: Where docs/configuration.md wants the table.
MARKER = "<!-- settings-reference -->"

_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)
_UNITS = ((86_400, "day"), (3600, "h"), (60, "min"))


@dataclass(frozen=True, slots=True)
class Row:
    """One setting as the reference shows it."""

    env: str
    type: str
    default: str
    constraint: str
    description: str
    from_file: bool


def attribute_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the string literal right under its annotation in the class body, or in
    the body of one of its bases of our own (``config``'s mixins)."""
    found: dict[str, str] = {}
    for base in reversed(model.__mro__):
        if base is model or base.__module__.startswith("config."):
            found |= _class_docstrings(base)
    return found


def _class_docstrings(model: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    found: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = inspect.cleandoc(following.value.value)
    return found


def _arms(annotation: Any) -> Iterator[Any]:
    """Each arm of the annotation's unions, nested ones flattened (the annotation if no union)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arm in typing.get_args(annotation):
            yield from _arms(arm)
    else:
        yield annotation


def _parts(annotation: Any) -> Iterator[Any]:
    """The annotation's members: each arm of a union, each Annotated unwrapped to its type."""
    for arm in _arms(annotation):
        if typing.get_origin(arm) is typing.Annotated:
            yield from _parts(typing.get_args(arm)[0])
        else:
            yield arm


def _metadata(annotation: Any) -> Iterator[Any]:
    """Constraint objects nested in the annotation (``Annotated[int, Field(ge=1)] | None``)."""
    for arm in _arms(annotation):
        if typing.get_origin(arm) is typing.Annotated:
            for extra in typing.get_args(arm)[1:]:
                yield from extra.metadata if isinstance(extra, FieldInfo) else (extra,)


def type_name(field: FieldInfo) -> str:
    names = []
    optional = False
    for part in _parts(field.annotation):
        if part is type(None):
            optional = True
        elif typing.get_origin(part) is Literal:
            names.append("one of " + ", ".join(f"`{value}`" for value in typing.get_args(part)))
        elif part is SecretStr:
            names.append("secret text")
        elif part is HttpUrl:
            names.append("URL")
        else:
            names.append(
                {bool: "boolean", int: "integer", float: "number", str: "text"}.get(
                    part, getattr(part, "__name__", str(part))
                )
            )
    return " or ".join(names) + (" (optional)" if optional else "")


def constraint(field: FieldInfo) -> str:
    bounds = []
    for item in [*field.metadata, *_metadata(field.annotation)]:
        for kind, attribute, symbol in _BOUNDS:
            if isinstance(item, kind):
                bounds.append(f"{symbol} {_number(getattr(item, attribute))}")
    return ", ".join(bounds)


def _number(value: Any) -> str:
    return f"{value:,}".replace(",", "\u2009") if isinstance(value, int) else f"{value:g}"


def _duration(seconds: float) -> str:
    for size, unit in _UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            plural = "s" if unit == "day" and count != 1 else ""
            return f"{count} {unit}{plural}"
    return ""


def default(field: FieldInfo, description: str) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()  # defaults are loopback URLs, never a secret
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"`{value}`"
    if isinstance(value, int) and description.lower().startswith("seconds"):
        human = _duration(value)
        if human and human != f"{value} s":
            shown += f" ({human})"
    return shown


def _markdown(text: str) -> str:
    """One table cell: RST's ``code`` as Markdown's, one line, pipes escaped."""
    text = re.sub(r"``(.+?)``", r"`\1`", text)
    return " ".join(text.split()).replace("|", "\\|")


def rows(model: type[BaseModel] = Settings) -> list[Row]:
    """Every field of ``model``, in the order the class declares them, then its bases'."""
    docstrings = attribute_docstrings(model)
    own = inspect.get_annotations(model)
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] not in own)
    found = []
    for name, field in fields:
        description = field.description or docstrings.get(name, "")
        found.append(
            Row(
                env=name.upper(),
                type=type_name(field),
                default=default(field, description),
                constraint=constraint(field),
                description=_markdown(description),
                from_file=is_secret(field),
            )
        )
    return found


def table(model: type[BaseModel] = Settings) -> str:
    """The Markdown table of the configuration page."""
    lines = [
        "| variable | type | default | constraint | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows(model):
        env = f"`{row.env}`" + (f" (or `{row.env}_FILE`)" if row.from_file else "")
        lines.append(
            f"| {env} | {row.type} | {row.default} | {row.constraint} | {row.description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
