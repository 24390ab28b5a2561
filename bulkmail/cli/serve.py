"""``bulkmail serve``: the one-click unsubscribe endpoint (RFC 8058)."""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from bulkmail.cli.main import App, pass_app


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (put a TLS reverse proxy in front).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--access-log", is_flag=True, help="Log every request (the lines contain unsubscribe tokens)."
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a client has to send a complete request head, and then its body "
    "(slow clients are closed, or answered 408).",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(min=8),
    help="Open connections at most (lowered to fit the open-files limit); beyond it the "
    "connection that has waited longest for its request head is closed.",
)
@click.option(
    "--loop",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    help="Event loop (auto: uvloop when installed).",
)
@pass_app
def serve(
    app: App,
    host: str,
    port: int,
    access_log: bool,
    header_timeout: float,
    max_connections: int,
    loop: str,
) -> None:
    """Serve the unsubscribe endpoint at the path of [unsubscribe] url, /healthz and /metrics.

    POST <url>/<token> with List-Unsubscribe=One-Click unsubscribes at once;
    GET shows a confirmation page and changes nothing. GET /healthz answers 200 while the
    database does, GET /metrics gives Prometheus metrics. With [signup] url set, it also
    serves the sign-up form of each --double-opt-in list at <path of that url>/LIST.
    Stops on Ctrl-C or SIGTERM.

    \b
    Example:
      BULKMAIL_SECRET=... bulkmail serve --host 127.0.0.1 --port 8080
    """
    from bulkmail.web.guard import Limits
    from bulkmail.web.server import app_path
    from bulkmail.web.server import serve as run

    settings = app.settings
    click.echo(
        f"bulkmail: unsubscribe endpoint on http://{host}:{port}"
        f"{app_path(settings).replace('{token}', '<token>')}"
        f" (and /healthz, /metrics)",
        err=True,
    )
    if settings.signup.url:
        base = (urlsplit(settings.signup.url).path or "/").rstrip("/")
        click.echo(f"bulkmail: sign-up forms on http://{host}:{port}{base}/<list>", err=True)
    limits = Limits(header_timeout=header_timeout, max_connections=max_connections)
    run(settings, app.ready_db(), host, port, access_log=access_log, limits=limits, loop=loop)


COMMANDS = [serve]
