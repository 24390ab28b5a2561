"""``bulkmail init`` and ``bulkmail demo``."""

from __future__ import annotations

import click

from bulkmail.cli.main import App, pass_app
from bulkmail.db.engine import describe, upgrade


@click.command()
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database schema (safe to run again).

    \b
    Example:
      BULKMAIL_DATABASE_URL=sqlite:///news.db bulkmail init
    """
    revision = upgrade(app.db)
    click.echo(f"database {describe(app.db.url)} is at schema revision {revision}")


@click.command()
@click.option(
    "--out",
    "out_dir",
    default="demo-out",
    show_default=True,
    metavar="DIR",
    help="Folder for the demo database, config and delivered .eml files.",
)
def demo(out_dir: str) -> None:
    """Run a whole campaign on this machine, with local servers standing in for the world.

    Creates a SQLite database, imports the bundled sample list, builds a campaign from
    templates/newsletter/, starts a DNS server on 127.0.0.1 for the demo domains and capture
    SMTP servers for their MX hosts on 127.0.0.2-5, sends, and leaves every delivered message
    as an .eml file.

    \b
    Example:
      bulkmail demo --out demo-out && ls demo-out/mail
    """
    from bulkmail.demo import run_demo

    run_demo(out_dir)


COMMANDS = [init, demo]
