"""``bulkmail bounces import`` and ``bulkmail bounces fetch``: bounce and complaint processing."""

from __future__ import annotations

import re
from pathlib import Path

import click

from bulkmail.bounces.analyse import Analysis, analyse
from bulkmail.bounces.process import MessageResult, RunReport, fetch_mailbox, import_files
from bulkmail.bounces.sources import read_files
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


@bounces.command("parse")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def bounces_parse(files: tuple[Path, ...], as_json: bool) -> None:
    """Classify bounce messages without a database or a configuration: what each one is.

    For every message (a single message file, LF or CRLF, or each message of an mbox): its
    kind (bounce, delayed, complaint, autoreply, unknown) and, per recipient, the action,
    the enhanced status, the SMTP reply code, the diagnostic, the bounce category and
    whether the address would be suppressed (hard). Nothing is recorded.

    \b
    Example:
      bulkmail bounces parse saved/*.eml --json
    """
    results = [analyse(item.data, item.ref) for item in read_files(list(files))]
    if as_json:
        echo_json({"messages": [r.as_dict() for r in results]})
        return
    for result in results:
        click.echo(_analysis_text(result))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """Text a stranger wrote, safe for a terminal: control characters (escapes) made visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def _analysis_text(a: Analysis) -> str:
    """The text form, for a person asking "why was this classified so?"."""
    return _shown(_analysis_lines(a))


def _analysis_lines(a: Analysis) -> str:
    why = "; ".join(a.notes)
    lines = [f"{a.file}: {a.kind}" + (f" ({why})" if why else "")]
    if a.error:
        lines.append(f"  error: {a.error}")
    for r in a.recipients:
        verdict = "HARD: would be suppressed" if r.hard else "not suppressed"
        code = f" {r.reply_code}" if r.reply_code else ""
        lines.append(
            f"  {r.address or '(recipient not named)'}: {r.action or '-'} {r.status or '-'}"
            f"{code}, {r.category}, {verdict}"
        )
        if r.diagnostic:
            lines.append(f"    {r.diagnostic}")
    return "\n".join(lines)


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
        f"left {c['left']} in place"
        + ("" if report.dry_run else f", removed {c['removed']}")
        + (f", {c['forged']} forged" if c["forged"] else "")
    )
    for cid, reason in report.paused:
        click.echo(_shown(f"campaign {cid} {reason}"))
    if report.dry_run:
        click.echo("dry run: nothing was written, moved or deleted")


def _line(m: MessageResult, dry_run: bool) -> str:
    if not m.processed:
        what = "FORGED, left for a person" if m.forged else "skipped"
        return _shown(f"{m.ref}: {m.kind}: {what} ({m.note or 'not ours'})")
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
    return _shown(f"{m.ref}: {m.kind}: " + "; ".join(parts) + tail)


COMMANDS = [bounces]
