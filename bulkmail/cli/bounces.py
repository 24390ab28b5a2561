"""``bulkmail bounces import`` and ``bulkmail bounces fetch``: bounce and complaint processing."""

from __future__ import annotations

from pathlib import Path

import click

from bulkmail.bounces.process import MessageResult, RunReport, fetch_mailbox, import_files
from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option

dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Report what would happen; write nothing, move or delete nothing.",
)


@click.group()
def bounces() -> None:
    """Bounces, complaints and mailto unsubscribes: read them, record them."""


@bounces.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@dry_run_option
@json_option
@pass_app
def bounces_import(app: App, files: tuple[Path, ...], dry_run: bool, as_json: bool) -> None:
    """Process bounce messages from files: single messages (.eml) or mbox files.

    Bounces (RFC 3464 and plain-text ones), delay notices, ARF complaints and mailto
    unsubscribe requests are recorded against the delivery they are about; auto-replies
    and other mail are reported and ignored. Importing the same file twice records nothing
    new. The files are never changed.

    \b
    Example:
      bulkmail bounces import saved/*.eml bounces.mbox --dry-run
    """
    _show(import_files(app.settings, app.ready_db(), list(files), dry_run=dry_run), as_json)


@bounces.command("fetch")
@dry_run_option
@json_option
@pass_app
def bounces_fetch(app: App, dry_run: bool, as_json: bool) -> None:
    """Read the [bounces] mailbox over IMAP or POP3 and process what is in it.

    Recognised bounces, complaints and unsubscribe requests are recorded, then moved to
    [bounces] processed_folder (IMAP) or deleted (POP3). Every other message is left
    untouched. The password comes from the variable [bounces] password_env names.

    \b
    Example:
      BULKMAIL_BOUNCE_PASSWORD=... bulkmail bounces fetch --json
      */10 * * * *  cd /srv/news && bulkmail bounces fetch   # cron
    """
    _show(fetch_mailbox(app.settings, app.ready_db(), dry_run=dry_run), as_json)


def _show(report: RunReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.as_dict())
        return
    for message in report.messages:
        click.echo(_line(message, report.dry_run))
    c = report.counts()
    verb = "would process" if report.dry_run else "processed"
    click.echo(
        f"{report.source}: {c['messages']} messages, {verb} {c['processed']}, "
        f"left {c['left']} in place" + ("" if report.dry_run else f", removed {c['removed']}")
        + (f", {c['forged']} forged" if c["forged"] else "")
    )
    if report.dry_run:
        click.echo("dry run: nothing was written, moved or deleted")


def _line(m: MessageResult, dry_run: bool) -> str:
    if not m.processed:
        what = "FORGED, left for a person" if m.forged else "skipped"
        return f"{m.ref}: {m.kind}: {what} ({m.note or 'not ours'})"
    parts = []
    for e in m.effects:
        what = f"{e.event} {e.email}"
        if e.state:
            what += f" -> {e.state}"
        if e.suppressed:
            what += ", suppressed"
        if not e.recorded and not dry_run:
            what += " (recorded before)"
        parts.append(what + (f" [{e.detail}]" if e.detail else ""))
    tail = " (moved/deleted)" if m.removed else ""
    return f"{m.ref}: {m.kind}: " + "; ".join(parts) + tail


COMMANDS = [bounces]
