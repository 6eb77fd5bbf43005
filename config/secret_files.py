"""``<VAR>_FILE``: any secret setting read from a file, as Docker and Kubernetes secrets give it.

``ZAPI_INSTANCE_TOKEN_FILE=/run/secrets/zapi_token`` sets ``ZAPI_INSTANCE_TOKEN`` to the file's
content (one trailing newline dropped, as ``echo`` writes it). Only the secret settings (the
tokens, the webhook secret, the Redis URLs that may carry a password) take a file; setting both
``VAR`` and ``VAR_FILE`` is refused, so that nobody wonders which one is in force.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource


class SecretFileError(ValueError):
    """A ``_FILE`` variable that cannot be used; the message names it."""


def is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


class SecretFilesSource(PydanticBaseSettingsSource):
    """Values of secret settings from the files their ``<VAR>_FILE`` variables name."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.read(field_name), field_name, False

    def read(self, field_name: str) -> str | None:
        variable = field_name.upper()
        path = os.environ.get(f"{variable}_FILE")
        if not path:
            return None
        if os.environ.get(variable):
            raise SecretFileError(f"{variable} and {variable}_FILE are both set: keep one")
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretFileError(
                f"{variable}_FILE: cannot read {path} ({exc.strerror or type(exc).__name__})"
            ) from None
        return content.removesuffix("\n")

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            if is_secret(field) and (value := self.read(name)) is not None:
                values[name] = value
        return values
