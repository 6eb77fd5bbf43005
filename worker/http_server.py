"""How our HTTP services (the webhook receiver, the console) run: uvicorn with our logging, no
access log (the receiver's path holds its secret, the console's URLs what an operator searched
for), no server header, ten seconds to finish the requests in flight on SIGTERM."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from config import Settings


def run(app: Starlette, settings: Settings, *, host: str, port: int, **options: Any) -> None:
    """Serve ``app`` until stopped (SIGINT or SIGTERM); ``options``: more of uvicorn's."""
    import uvicorn

    from worker.logging import configure_server_logging

    configure_server_logging(settings.zapi_log_format == "json")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=10,
        **options,
    )
