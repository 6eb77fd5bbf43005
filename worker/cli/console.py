"""``zapi-queue console``: the operator console's web server (worker/console/)."""

from __future__ import annotations

import click

from worker.cli.common import fail, settings_or_exit
from worker.cli.main import main
from worker.console import DEFAULT_HOST, DEFAULT_PORT


@main.command("console")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="0.0.0.0 in a container")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--trust-proxy-header",
    metavar="NAME",
    help="an authenticating proxy in front names the user in this header (e.g. "
    "X-Forwarded-User): no ZAPI_CONSOLE_AUTH needed, and a request without it gets 401",
)
def console(host: str, port: int, trust_proxy_header: str | None) -> None:
    """Serve the operator console: orders, dead letters (look, replay, purge) and instances.

    Every page asks for the login ZAPI_CONSOLE_AUTH=user:password (HTTP basic auth), or trusts
    the user an authenticating proxy names (--trust-proxy-header). Refuses to start without a
    login, or with an empty one, one without a user or a password, or a placeholder password.
    """
    from worker.console.app import serve
    from worker.console.auth import LoginRefusedError, login_for

    settings = settings_or_exit()
    try:
        login_for(settings, trust_proxy_header=trust_proxy_header)
    except LoginRefusedError as exc:
        fail(str(exc))
    serve(settings, host=host, port=port, trust_proxy_header=trust_proxy_header)
