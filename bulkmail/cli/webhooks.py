"""``bulkmail webhooks run|status``: send the outbox's events to the [webhooks] endpoints."""

from __future__ import annotations

import time

import click

from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option


@click.group()
def webhooks() -> None:
    """Events out: signed JSON POSTs of deliveries, unsubscribes and campaign changes."""


@webhooks.command("run")
@click.option("--once", is_flag=True, help="Send what is due now, then exit (for cron).")
@pass_app
def webhooks_run(app: App, once: bool) -> None:
    """POST the outbox's events to [webhooks] urls until stopped (Ctrl-C or SIGTERM).

    Run it as a service beside `bulkmail worker`; the senders never wait for it. Each
    event is retried with backoff until its endpoint answers 2xx, and carries the same
    event id every time, so receivers drop duplicates.

    \b
    Example:
      BULKMAIL_WEBHOOK_SECRET=... bulkmail webhooks run
    """
    from bulkmail.webhooks.sender import run_sender

    stats = run_sender(app.settings, app.ready_db(), once=once)
    click.echo(f"webhooks: {stats.delivered} delivered, {stats.failed} failed attempts", err=True)


@webhooks.command("status")
@json_option
@pass_app
def webhooks_status(app: App, as_json: bool) -> None:
    """How many events are owed to the endpoints, and since when.

    \b
    Example:
      bulkmail webhooks status --json
    """
    from bulkmail.webhooks.outbox import backlog

    b = backlog(app.ready_db())
    now = time.time()
    lag = None if b.oldest_created_at is None else max(now - b.oldest_created_at, 0.0)
    if as_json:
        echo_json({"pending": b.pending, "lag_seconds": lag, "next_due_at": b.next_due_at})
        return
    click.echo(f"pending: {b.pending}")
    click.echo(f"oldest: {'-' if lag is None else f'{lag:.0f} s ago'}")


COMMANDS = [webhooks]
