"""What ``campaigns send`` does before it sends: ``--test-to``, ``--dry-run`` and asking
before a large send on a terminal. The logic is in ``bulkmail.safe_send``."""

from __future__ import annotations

import click

from bulkmail import safe_send
from bulkmail.cli import confirm
from bulkmail.cli.main import App
from bulkmail.cli.options import echo_json
from bulkmail.reports.terminal import printable

CONFIRM_ABOVE = 1000  # recipients; --confirm-above changes it

test_to_option = click.option(
    "--test-to",
    metavar="ADDR",
    default=None,
    help="Send one signed copy, subject marked [TEST], to ADDR; no delivery is recorded.",
)
as_option = click.option(
    "--as",
    "as_address",
    metavar="ADDR",
    default=None,
    help="With --test-to: render it for this subscriber (default: the list's first member).",
)
dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Only count who would be sent to or skipped, per domain and site.",
)
confirm_above_option = click.option(
    "--confirm-above",
    type=click.IntRange(0),
    default=CONFIRM_ABOVE,
    show_default=True,
    help="On a terminal, ask before sending to more recipients than this.",
)


def run_test_send(
    app: App, campaign_id: int, to: str, as_address: str | None, unsigned: bool, as_json: bool
) -> None:
    sent = safe_send.send_test_copy(
        app.settings, app.ready_db(), campaign_id, to, as_address, unsigned=unsigned
    )
    if as_json:
        echo_json(sent.__dict__)
        return
    who = f" rendered as {sent.rendered_as}" if sent.rendered_as else ""
    signed = "signed" if sent.signed else "UNSIGNED"
    click.echo(printable(f"test copy of campaign {campaign_id} ({signed}){who} sent to {sent.to}"))
    click.echo(printable(f"  {sent.mx_host or '-'}: {sent.reply}"))


def show_dry_run(app: App, campaign_id: int, as_json: bool) -> None:
    run = safe_send.dry_run(app.settings, app.ready_db(), campaign_id)
    if as_json:
        echo_json(run.as_dict())
        return
    what = "pending deliveries" if run.enqueued else "list members"
    click.echo(
        f"campaign {campaign_id} (dry run, {what}): {run.send} would be sent, "
        f"{run.suppressed} skipped as suppressed, {run.unsubscribed} skipped as unsubscribed"
    )
    click.echo("per domain:")
    for domain, n in list(run.domains.items())[:20]:
        click.echo(printable(f"  {n:>9}  {domain}"))
    if len(run.domains) > 20:
        click.echo(f"  ... and {len(run.domains) - 20} more domains")
    click.echo("per destination site (MX set):")
    for site, n in run.sites.items():
        click.echo(printable(f"  {n:>9}  {site}"))


def confirm_large_send(app: App, campaign_id: int, above: int, yes: bool) -> None:
    """On a terminal, ask before mailing more than ``above``; never without one (cron)."""
    if yes or not confirm.on_terminal():
        return
    count = safe_send.send_count(app.ready_db(), campaign_id)
    if count > above:
        click.confirm(f"Send campaign {campaign_id} to {count} recipients?", abort=True, err=True)


COMMANDS: list[click.Command] = []
