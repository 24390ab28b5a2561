"""The ``bulkmail`` command: global options, the shared context, and error handling.

Command modules parse options, call one library function and print (STYLE.md). Every error
a user can cause is a BulkmailError: printed as one line on stderr with a non-zero exit code,
never a traceback (``-v`` adds the traceback for bug reports).
"""

from __future__ import annotations

import logging
import traceback
from functools import cached_property
from typing import IO, Any

import click

from bulkmail.config import Settings, load_settings
from bulkmail.db.engine import Database
from bulkmail.errors import BulkmailError


class App:
    """What every command needs, loaded on first use so ``--help`` never touches a file."""

    def __init__(self, config_path: str | None, verbose: int) -> None:
        self.config_path = config_path
        self.verbose = verbose

    @cached_property
    def settings(self) -> Settings:
        from bulkmail.cli.notices import config_notices

        settings = load_settings(self.config_path)
        for notice in config_notices(settings):
            click.echo(f"bulkmail: warning: {notice}", err=True)
        return settings

    @cached_property
    def db(self) -> Database:
        from bulkmail.webhooks.outbox import enable

        return enable(Database(self.settings.database.url), self.settings)

    def ready_db(self) -> Database:
        """The database, checked to be reachable and initialised."""
        self.db.check_ready()
        return self.db


pass_app = click.make_pass_decorator(App)


class UserError(click.ClickException):
    """A BulkmailError on its way out: one line on stderr, the error's exit code."""

    def __init__(self, error: BulkmailError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"bulkmail: error: {self.message}", err=True)


class BulkmailGroup(click.Group):
    """The top-level group: our errors become UserError wherever a command raises them."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BulkmailError as exc:
            app = ctx.obj
            if isinstance(app, App) and app.verbose:
                traceback.print_exc()
            raise UserError(exc) from None


@click.group(cls=BulkmailGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="BULKMAIL_CONFIG",
    metavar="PATH",
    help="Config file (default ./bulkmail.toml; env BULKMAIL_CONFIG).",
)
@click.option("-v", "--verbose", count=True, help="More output (-vv: debug).")
@click.version_option(package_name="bulkmail")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """bulkmail: deliver newsletter campaigns, correctly and fast.

    \b
    Example:
      bulkmail init
      bulkmail lists create news
      bulkmail subscribers import --list news people.csv
      bulkmail campaigns create --name "May" --list news --subject "Hello {{ subscriber.name }}" \\
          --from "News <news@example.com>" --template newsletter
      bulkmail campaigns send 1 --wait
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = App(config_path, verbose)


def _register() -> None:
    """Add the commands of every module in bulkmail.cli that lists them in ``COMMANDS``."""
    import importlib
    import pkgutil

    import bulkmail.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"bulkmail.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="bulkmail")
