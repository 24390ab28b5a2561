"""``bulkmail suppressions ...``: list, add, remove, import, export."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from bulkmail.audience import suppressions as lib
from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option
from bulkmail.cli.rejects import RejectReport
from bulkmail.errors import InputError
from bulkmail.reports.terminal import printable

source_option = click.option(
    "--source",
    "source",
    default=None,
    metavar="SOURCE",
    help="Only entries of this source (manual, import, bounce, ...).",
)


@click.group()
def suppressions() -> None:
    """The suppression list: addresses no campaign mails."""


@suppressions.command("list")
@source_option
@click.option(
    "--after",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Start after this entry id (keyset paging).",
)
@click.option(
    "--limit",
    default=None,
    type=click.IntRange(1),
    help="At most this many entries (default: all, streamed).",
)
@json_option
@pass_app
def list_(app: App, source: str | None, after: int, limit: int | None, as_json: bool) -> None:
    """Show suppressed addresses, oldest first, with reason and source.

    \b
    Example:
      bulkmail suppressions list --source bounce --limit 50 --json
    """
    db = app.ready_db()
    entries = (
        lib.list_suppressions(db, after, limit, source)
        if limit
        else lib.iter_suppressions(db, source, after=after)
    )
    if as_json:
        _echo_json_array(e.as_dict() | {"id": e.id} for e in entries)
        return
    for e in entries:
        click.echo(  # a reason can hold what a remote server wrote: escapes shown, not run
            f"{e.id:>7}  {printable(e.email):<40} {e.source:<10} {lib.iso_time(e.created_at)}  "
            f"{printable(e.reason)}"
        )


def _echo_json_array(items: Iterable[dict[str, Any]]) -> None:
    """A JSON array written item by item, so a large list streams."""
    out = click.get_text_stream("stdout")
    out.write("[")
    for i, item in enumerate(items):
        out.write(("," if i else "") + "\n" + json.dumps(item, ensure_ascii=False))
    out.write("\n]\n")


@suppressions.command("add")
@click.argument("email")
@click.option("--reason", default="", help="Why (kept with the entry).")
@click.option("--source", default="manual", show_default=True, help="Where it came from.")
@json_option
@pass_app
def add(app: App, email: str, reason: str, source: str, as_json: bool) -> None:
    """Suppress an address (an existing entry is kept as it is).

    \b
    Example:
      bulkmail suppressions add someone@example.com --reason "asked by phone"
    """
    added = lib.add_suppression(app.ready_db(), email, reason, source)
    if as_json:
        echo_json({"email": email, "added": added})
    else:
        click.echo(f"{email}: {'suppressed' if added else 'was suppressed already'}")


@suppressions.command("remove")
@click.argument("email")
@json_option
@pass_app
def remove(app: App, email: str, as_json: bool) -> None:
    """Stop suppressing an address (list memberships are not changed).

    \b
    Example:
      bulkmail suppressions remove someone@example.com
    """
    removed = lib.remove_suppression(app.ready_db(), email)
    if as_json:
        echo_json({"email": email, "removed": removed})
    else:
        click.echo(f"{email}: {'no longer suppressed' if removed else 'was not suppressed'}")


@suppressions.command("import")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--reason", default="", help="Reason for lines that give none.")
@click.option(
    "--source", default="import", show_default=True, help="Source for lines that give none."
)
@json_option
@pass_app
def import_(app: App, file: str, reason: str, source: str, as_json: bool) -> None:
    """Suppress every address of a CSV file: email[,reason] per line, or a header row
    naming the columns (email, reason, source) as 'export' writes them. '-' is stdin.
    Rejected lines are listed with their line numbers.

    \b
    Example:
      bulkmail suppressions import --reason "old list cleanup" blocked.csv --json
    """
    report = RejectReport(as_json, lambda r: f"line {r.line}: {r.reason}: {r.text}")
    result = lib.import_csv(app.ready_db(), file, reason, source, on_reject=report)
    report.finish(
        {"added": result.added, "existing": result.existing},
        f"{result.added} added, {result.existing} already suppressed, "
        f"{result.rejected_count} rejected",
    )


@suppressions.command("export")
@click.argument("file", default="-", type=click.Path(allow_dash=True, dir_okay=False))
@source_option
@json_option
@pass_app
def export(app: App, file: str, source: str | None, as_json: bool) -> None:
    """Write the suppression list as CSV (email, reason, source, created_at) to FILE or
    stdout; 'import' reads it back. With a FILE, prints how many were written.

    \b
    Example:
      bulkmail suppressions export suppressions.csv --json
    """
    db = app.ready_db()
    if file == "-":
        lib.export_csv(db, click.get_text_stream("stdout"), source)
        return
    try:  # atomic: a failed write leaves no half file
        with click.open_file(file, "w", encoding="utf-8", atomic=True) as out:
            count = lib.export_csv(db, out, source)  # type: ignore[arg-type]
    except OSError as exc:
        raise InputError(f"{file}: cannot write: {exc.strerror or exc}") from None
    if as_json:
        echo_json({"exported": count, "file": file})
    else:
        click.echo(f"{count} suppressions written to {file}")


COMMANDS = [suppressions]
