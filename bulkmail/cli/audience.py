"""``bulkmail lists ...`` and ``bulkmail subscribers ...``."""

from __future__ import annotations

from pathlib import Path

import click

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import all_lists, create_list
from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option
from bulkmail.cli.rejects import RejectReport


@click.group()
def lists() -> None:
    """Mailing lists."""


@lists.command("create")
@click.argument("name")
@click.option(
    "--double-opt-in",
    is_flag=True,
    help="Take sign-ups from serve's form at [signup] url; each is added once its address "
    "confirms by a link.",
)
@json_option
@pass_app
def lists_create(app: App, name: str, double_opt_in: bool, as_json: bool) -> None:
    """Create a list.

    \b
    Example:
      bulkmail lists create news
      bulkmail lists create news --double-opt-in
    """
    lst = create_list(app.ready_db(), name, double_opt_in=double_opt_in)
    if as_json:
        echo_json({"id": lst.id, "name": lst.name, "double_opt_in": lst.double_opt_in})
    else:
        click.echo(f"list {lst.name!r} created (id {lst.id})")


@lists.command("list")
@json_option
@pass_app
def lists_list(app: App, as_json: bool) -> None:
    """Show every list with its number of subscribed members.

    \b
    Example:
      bulkmail lists list --json
    """
    rows = all_lists(app.ready_db())
    if as_json:
        echo_json([{"id": lst.id, "name": lst.name, "subscribed": n} for lst, n in rows])
        return
    for lst, n in rows:
        click.echo(f"{lst.id:>4}  {lst.name:<30} {n:>9} subscribed")


@click.group()
def subscribers() -> None:
    """Subscribers: import, list, show, remove, export."""


@subscribers.command("import")
@click.option("--list", "list_name", required=True, help="The list to add them to.")
@click.argument("file", type=click.Path(path_type=Path))
@json_option
@pass_app
def subscribers_import(app: App, list_name: str, file: Path, as_json: bool) -> None:
    """Import subscribers from a CSV file with a header row.

    The 'email' column is required, 'name' optional; every other column becomes an
    attribute usable in templates. Re-importing updates instead of duplicating; members
    who unsubscribed stay unsubscribed. Rejected rows are listed with their line numbers.

    \b
    Example:
      bulkmail subscribers import --list news people.csv --json
    """
    report = RejectReport(as_json, lambda r: f"line {r.line}: {r.email!r}: {r.reason}")
    result = import_csv(app.ready_db(), list_name, file, on_reject=report)
    report.finish(
        {"imported": result.imported, "updated": result.updated},
        f"imported {result.imported}, updated {result.updated}, rejected {result.rejected_count}",
    )


COMMANDS = [lists, subscribers]
