"""``bulkmail campaigns report`` and ``bulkmail events export``: what happened in a send."""

from __future__ import annotations

import sys
import time

import click

from bulkmail.cli.campaigns import campaigns
from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option


@campaigns.command("report")
@click.argument("campaign_id", type=int)
@click.option(
    "--html",
    "html_path",
    metavar="FILE",
    default=None,
    help="Also write one self-contained HTML file with tables and charts.",
)
@click.option(
    "--top",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Destinations (recipient domains) to show.",
)
@json_option
@pass_app
def report(app: App, campaign_id: int, html_path: str | None, top: int, as_json: bool) -> None:
    """What happened in a send: counts, destinations, bounce and deferral reasons, throughput,
    and the list health (complaint and hard-bounce rates against their warning levels and the
    [bounces] brakes). Bounce classes are those of the bounce taxonomy (invalid_recipient,
    bad_domain, policy, spam_block, ...), as in ``bounces parse`` and the suppressions.

    \b
    Example:
      bulkmail campaigns report 1
      bulkmail campaigns report 1 --json > report.json
      bulkmail campaigns report 1 --html report.html
    """
    from bulkmail.bounces.brakes import from_settings
    from bulkmail.reports.data import build_report

    data = build_report(app.ready_db(), campaign_id, top=top, limits=from_settings(app.settings))
    if html_path:
        from bulkmail.reports.html import write_html

        path = write_html(data, html_path)
        if not as_json:
            click.echo(f"report written to {path}", err=True)
    if as_json:
        echo_json(data.to_dict())
        return
    if html_path:
        return
    from bulkmail.reports.text import print_report, report_console

    print_report(data, report_console())


@click.group()
def events() -> None:
    """The event log: deferrals, bounces, complaints, unsubscribes, expiries."""


@events.command("export")
@click.option("--campaign", "campaign_id", type=int, default=None, help="Only this campaign.")
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only events from WHEN on: '2h', '3d', '2025-05-01', '2025-05-01T09:00' (UTC) "
    "or UNIX seconds.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV with a header row, or one JSON object per line.",
)
@pass_app
def export(app: App, campaign_id: int | None, since: str | None, fmt: str) -> None:
    """Stream the event log to standard output, oldest first, in constant memory.

    \b
    Example:
      bulkmail events export --campaign 1 --format csv > events.csv
      bulkmail events export --since 1d --format jsonl | gzip > events.jsonl.gz
    """
    from bulkmail.reports.export import export_events, parse_since
    from bulkmail.reports.terminal import PrintableWriter

    when = parse_since(since, time.time()) if since is not None else None
    out = sys.stdout
    # CSV to a file stays exact; on a terminal, a reply's escape sequences are shown, not run.
    # JSON Lines escape control characters themselves.
    target = PrintableWriter(out) if fmt == "csv" and out.isatty() else out
    count = export_events(app.ready_db(), target, campaign_id=campaign_id, since=when, fmt=fmt)  # type: ignore[arg-type]
    out.flush()
    if sys.stderr.isatty():
        click.echo(f"{count} events exported", err=True)


COMMANDS = [events]
