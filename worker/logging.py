"""Log redaction: whatever a library logs, no token or password reaches a handler's output."""

from __future__ import annotations

import logging

from config import ConfigurationError, Settings, get_settings
from tasks.redaction import RedactingFilter

#: Loggers that print request URLs (and so the instance token) at INFO.
NOISY_URL_LOGGERS = ("httpx", "httpcore")


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value (empty ones left out)."""
    values = [
        s.get_secret_value()
        for s in (settings.zapi_instance_token, settings.zapi_client_token)
        if s is not None
    ]
    return [v for v in values if v]


def install_redaction(logger: logging.Logger) -> None:
    """Add a redacting filter to every handler of ``logger`` and of the root logger."""
    try:
        secrets = secrets_of(get_settings())
    except ConfigurationError:
        secrets = []
    for name in NOISY_URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in {*logger.handlers, *logging.getLogger().handlers}:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))
