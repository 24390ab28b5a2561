"""``bulkmail campaigns ...``: create, list, show, preview, send, status."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

import click

from bulkmail import campaigns as lib
from bulkmail.cli import sendsafe
from bulkmail.cli.confirm import yes_option
from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option, workers_option
from bulkmail.reports.terminal import printable
from bulkmail.scheduling import zone

if TYPE_CHECKING:
    from bulkmail.db.models import Campaign


@click.group()
def campaigns() -> None:
    """Campaigns: create, preview, send, follow."""


@campaigns.command("create")
@click.option("--name", required=True, help="A name for people.")
@click.option("--list", "list_name", required=True, help="The list to send to.")
@click.option("--subject", required=True, help="Subject line (a Jinja2 template).")
@click.option("--from", "from_header", required=True, help='"Name <address@domain>".')
@click.option(
    "--template",
    required=True,
    help="A template folder (body.html and/or body.txt) or a bundled name.",
)
@click.option("--reply-to", default=None, help="Optional Reply-To address.")
@click.option(
    "--at",
    "at",
    default=None,
    metavar="WHEN",
    help="Schedule it: ISO 8601 with an offset, or a local time in [schedule] timezone.",
)
@json_option
@pass_app
def create(
    app: App,
    name: str,
    list_name: str,
    subject: str,
    from_header: str,
    template: str,
    reply_to: str | None,
    at: str | None,
    as_json: bool,
) -> None:
    """Create a campaign; its template is checked now, not during the send.

    \b
    Example:
      bulkmail campaigns create --name "May news" --list news \\
        --subject "News for {{ subscriber.name or 'you' }}" \\
        --from "Example News <news@example.com>" --template newsletter --json
    """
    c = lib.create_campaign(
        app.ready_db(),
        app.settings,
        name=name,
        list_name=list_name,
        subject=subject,
        from_header=from_header,
        template=template,
        reply_to=reply_to,
        at=at,
    )
    if as_json:
        echo_json({"id": c.id})
    else:
        click.echo(f"campaign {c.id} created ({c.state})")


@campaigns.command("list")
@json_option
@pass_app
def list_(app: App, as_json: bool) -> None:
    """One line per campaign under a header: state, schedule (UTC), progress, counts and rate.

    COMPLAINTS (of delivered) and HARD (hard bounces of attempted) are the list-health rates:
    "!" past the warning level (complaints 0.1%, hard bounces 2%), "!!" at the [bounces]
    brake (0.3% and 5% by default).

    \b
    Example:
      bulkmail campaigns list
    """
    from bulkmail.bounces.brakes import from_settings
    from bulkmail.reports.lines import CAMPAIGN_HEADER, campaign_lines, format_campaign_line

    rows = campaign_lines(app.ready_db(), from_settings(app.settings))
    if as_json:
        echo_json(rows)
        return
    if rows:
        click.echo(CAMPAIGN_HEADER)
    for row in rows:
        click.echo(format_campaign_line(row))


@campaigns.command("show")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def show(app: App, campaign_id: int, as_json: bool) -> None:
    """Show a campaign's settings and counts.

    \b
    Example:
      bulkmail campaigns show 1
    """
    db = app.ready_db()
    c = lib.get_campaign(db, campaign_id)
    data = {
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "subject": c.subject,
        "from": c.from_header,
        "reply_to": c.reply_to,
        "template": c.template,
        "list_id": c.list_id,
        "scheduled_at": c.scheduled_at,
        "created_at": c.created_at,
        "started_at": c.started_at,
        "finished_at": c.finished_at,
        "reason": c.state_reason,
    }
    counts = lib.state_counts(db, c.id)
    if as_json:
        echo_json({**data, "counts": counts})  # times stay UNIX seconds for machines
        return
    tz = app.settings.schedule.timezone
    for key, value in data.items():
        if key.endswith("_at"):
            value = iso_time(value, tz)  # type: ignore[arg-type]
        click.echo(printable(f"{key:>13}: {value}"))  # name, subject, reason: escapes shown
    click.echo("       counts: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))


def iso_time(ts: float | None, timezone: str) -> str:
    """A stored UNIX time as ISO 8601 in ``timezone`` ([schedule] timezone), or "-"."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, zone(timezone)).isoformat(timespec="seconds")


@campaigns.command("preview")
@click.argument("campaign_id", type=int)
@click.option("--to", "to", required=True, help="A subscriber's address.")
@pass_app
def preview(app: App, campaign_id: int, to: str) -> None:
    """Print the exact bytes that would be sent to one subscriber (DKIM-signed).

    \b
    Example:
      bulkmail campaigns preview 1 --to alice@example.com > alice.eml
    """
    from bulkmail.delivery.pipeline import preview_bytes

    data = preview_bytes(app.settings, app.ready_db(), campaign_id, to)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@campaigns.command("send")
@click.argument("campaign_id", type=int)
@workers_option
@click.option(
    "--wait",
    is_flag=True,
    help="Keep going, honouring retry intervals, until every delivery is final.",
)
@click.option(
    "--unsigned",
    is_flag=True,
    help="Send even though no DKIM key is configured (else refused).",
)
@sendsafe.test_to_option
@sendsafe.as_option
@sendsafe.dry_run_option
@sendsafe.confirm_above_option
@yes_option
@json_option
@pass_app
def send(
    app: App,
    campaign_id: int,
    workers: int,
    wait: bool,
    unsigned: bool,
    test_to: str | None,
    as_address: str | None,
    dry_run: bool,
    confirm_above: int,
    yes: bool,
    as_json: bool,
) -> None:
    """Deliver a campaign: enqueue its recipients, then send everything due now.

    Safe to run again at any time, also after a crash: nothing already sent is sent again
    (except the few messages in flight at a hard kill). Ctrl-C stops claiming, lets the
    messages in flight finish, records them and prints the summary. On a terminal it asks
    first when more than --confirm-above recipients would be mailed (not under cron).

    \b
    Example:
      bulkmail campaigns send 1 --test-to me@example.com --as ann@example.com
      bulkmail campaigns send 1 --dry-run
      bulkmail campaigns send 1 --workers 2 --wait
    """
    from bulkmail.cli.progress import ProgressView
    from bulkmail.delivery.runner import send_campaign
    from bulkmail.signing.policy import require_signing

    if test_to:
        sendsafe.run_test_send(app, campaign_id, test_to, as_address, unsigned, as_json)
        return
    if as_address:
        raise click.UsageError("--as goes with --test-to")
    if dry_run:
        sendsafe.show_dry_run(app, campaign_id, as_json)
        return
    db = app.ready_db()
    lib.get_campaign(db, campaign_id)
    require_signing(app.settings, unsigned=unsigned)
    sendsafe.confirm_large_send(app, campaign_id, confirm_above, yes)
    with ProgressView(campaign_id, enabled=not as_json) as view:
        report = send_campaign(
            app.settings,
            db,
            campaign_id,
            workers=workers,
            wait=wait,
            config_path=app.config_path,
            progress=view,
        )
    counts = {k: v for k, v in report.counts.items()}
    if as_json:
        echo_json(
            {
                "id": campaign_id,
                "state": report.state,
                "total": sum(counts.values()),
                **counts,
                "seconds": round(report.seconds, 3),
                "interrupted": report.interrupted,
            }
        )
        return
    total = sum(counts.values())
    click.echo(
        f"campaign {campaign_id}: {report.state}"
        f"{' (interrupted)' if report.interrupted else ''}, {total} deliveries "
        f"in {report.seconds:.1f}s"
    )
    for state, n in counts.items():
        if n:
            click.echo(f"  {state:<10} {n:>9}")


@campaigns.command("status")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def status(app: App, campaign_id: int, as_json: bool) -> None:
    """Counts per delivery state, also while a send runs elsewhere.

    The list-health line gives the complaint rate (of delivered) and the hard-bounce rate (of
    attempted) against their warning levels and the [bounces] brakes (Gmail and Yahoo warn
    from 0.1% complaints and enforce 0.3%).

    \b
    Example:
      bulkmail campaigns status 1 --json
    """
    from bulkmail.bounces import brakes

    db = app.ready_db()
    data = lib.status(db, campaign_id)
    with db.session() as s:  # complaint and hard-bounce rates against the brakes (issue 13)
        health = brakes.figures(brakes.health(s, campaign_id), brakes.from_settings(app.settings))
    if as_json:
        echo_json({**data, "list_health": health})
        return
    click.echo(
        f"campaign {data['id']} {data['name']!r}: {data['state']}, {data['total']} deliveries"
    )
    click.echo("  " + ", ".join(f"{k} {data[k]}" for k in list(data)[4:] if k != "reason"))
    click.echo(f"  list health: {brakes.describe(health)}")
    if data["reason"]:
        click.echo(f"  reason: {printable(data['reason'])}")


def _state_line(c: Campaign, as_json: bool, extra: dict[str, object] | None = None) -> None:
    data = {
        "id": c.id,
        "state": c.state,
        "scheduled_at": c.scheduled_at,
        "reason": c.state_reason,
        **(extra or {}),
    }
    if as_json:
        echo_json(data)
    else:
        click.echo(
            f"campaign {data['id']}: {data['state']}"
            + "".join(f", {k} {v}" for k, v in (extra or {}).items())
        )


@campaigns.command("schedule")
@click.argument("campaign_id", type=int)
@click.option(
    "--at",
    "at",
    required=True,
    metavar="WHEN",
    help="ISO 8601 with an offset, or a local time in [schedule] timezone.",
)
@json_option
@pass_app
def schedule_(app: App, campaign_id: int, at: str, as_json: bool) -> None:
    """Schedule a campaign; run-due or a worker starts it when its time comes.

    A campaign found more than [schedule] grace (default 24h) late is marked missed
    instead of being sent, and waits for 'campaigns send'.

    \b
    Example:
      bulkmail campaigns schedule 1 --at 2026-12-01T09:00+01:00
    """
    _state_line(lib.schedule(app.ready_db(), app.settings, campaign_id, at), as_json)


@campaigns.command("unschedule")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def unschedule_(app: App, campaign_id: int, as_json: bool) -> None:
    """Take a scheduled campaign back to draft.

    \b
    Example:
      bulkmail campaigns unschedule 1
    """
    _state_line(lib.unschedule(app.ready_db(), campaign_id), as_json)


@campaigns.command("pause")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def pause_(app: App, campaign_id: int, as_json: bool) -> None:
    """Stop sending a campaign, in every process, within a second or two.

    Messages already being transferred finish and are recorded; nothing else is sent
    until 'campaigns resume'.

    \b
    Example:
      bulkmail campaigns pause 1
    """
    _state_line(lib.pause(app.ready_db(), campaign_id), as_json)


@campaigns.command("resume")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def resume_(app: App, campaign_id: int, as_json: bool) -> None:
    """Continue a paused campaign exactly where it stopped.

    A worker or the next run-due picks it up; or run 'campaigns send ID'.

    \b
    Example:
      bulkmail campaigns resume 1 && bulkmail campaigns send 1 --wait
    """
    _state_line(lib.resume(app.ready_db(), campaign_id), as_json)


@campaigns.command("cancel")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def cancel_(app: App, campaign_id: int, as_json: bool) -> None:
    """Cancel a campaign: every delivery not yet sent is cancelled.

    \b
    Example:
      bulkmail campaigns cancel 1
    """
    c, n = lib.cancel(app.ready_db(), campaign_id)
    _state_line(c, as_json, {"cancelled": n})


COMMANDS = [campaigns]
