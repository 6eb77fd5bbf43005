"""Log redaction: whatever a library logs, no token or password reaches a handler's output."""

from __future__ import annotations

import json
import logging
from typing import Any

from config import ConfigurationError, get_settings
from tasks import tracing
from tasks.contract.redaction import RedactingFilter

#: The parent of zapi-queue's own loggers (zapi_queue.attempts, zapi_queue.webhook):
#: ZAPI_LOG_LEVEL sets its level.
OUR_LOGGER = "zapi_queue"
#: Loggers that print request URLs (and so the instance token) at INFO.
NOISY_URL_LOGGERS = ("httpx", "httpcore")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the attempt fields, and the
    ``trace_id`` and ``span_id`` of the span it was logged in when tracing (tasks/tracing.py),
    so that a log line leads to its trace and back."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "zapi", {}))
        ids = tracing.log_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json_format(logger: logging.Logger) -> None:
    """Switch every handler of ``logger`` and of the root logger to JSON lines."""
    for handler in {*logger.handlers, *logging.getLogger().handlers}:
        handler.setFormatter(JsonFormatter())


def known_secrets() -> list[str]:
    """The configured secrets, or none while the settings do not load (the process then
    refuses to start, saying why; redaction still masks URL passwords and tokens in paths)."""
    try:
        return get_settings().secret_values()
    except ConfigurationError:
        return []


def install_redaction(logger: logging.Logger) -> None:
    """Add a redacting filter to every handler of ``logger`` and of the root logger."""
    secrets = known_secrets()
    for name in NOISY_URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in {*logger.handlers, *logging.getLogger().handlers}:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))


def configure_server_logging(json_lines: bool) -> None:
    """Logging for a process uvicorn serves (the webhook receiver, the console): its loggers go
    to the root logger's handler, which redacts (and speaks JSON lines when asked) like the
    worker's."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = logging.getLogger()
    install_redaction(root)
    if json_lines:
        use_json_format(root)
