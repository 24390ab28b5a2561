"""``bulkmail run-due`` (one pass, for cron) and ``bulkmail worker`` (for a service manager)."""

from __future__ import annotations

import logging
import sys

import click

from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option, workers_option
from bulkmail.delivery.retry import parse_duration


def _log_to_stderr() -> None:
    logger = logging.getLogger("bulkmail")
    if not any(getattr(h, "_bulkmail", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler._bulkmail = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(min(logger.level or logging.INFO, logging.INFO))


@click.command("run-due")
@click.option(
    "--max-runtime",
    default=None,
    metavar="DURATION",
    help="Stop claiming after this long (e.g. 50m); the rest stays resumable.",
)
@workers_option
@json_option
@pass_app
def run_due(app: App, max_runtime: str | None, workers: int, as_json: bool) -> None:
    """One pass for cron: start due campaigns, send due retries, exit when nothing is due.

    Overlapping runs are safe: a second run-due joins the work (claims are leased), so no
    recipient gets two copies.

    \b
    Example (crontab, every 5 minutes; see scripts/crontab.example):
      */5 * * * *  bulkmail --config /etc/bulkmail.toml run-due --max-runtime 4m
    """
    from bulkmail.delivery.runner import run_due as run
    from bulkmail.signing.policy import require_signing

    require_signing(app.settings)
    limit = None
    if max_runtime:
        try:
            limit = parse_duration(max_runtime)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-runtime") from None
    if not as_json:
        _log_to_stderr()
    result = run(
        app.settings,
        app.ready_db(),
        max_runtime=limit,
        workers=workers,
        config_path=app.config_path,
    )
    if as_json:
        echo_json(result)
        return
    states = ", ".join(f"{cid} {state}" for cid, state in result["states"].items())
    click.echo(
        f"run-due: started {len(result['started'])}, worked on "
        f"{len(result['campaigns'])} campaign(s){': ' + states if states else ''}"
        f"{' (stopped early)' if result['interrupted'] else ''}"
    )


@click.command("worker")
@click.option(
    "--max-idle-sleep",
    default=30.0,
    show_default=True,
    help="Longest pause between looks for due work, in seconds.",
)
@pass_app
def worker(app: App, max_idle_sleep: float) -> None:
    """Run due work as it appears, until SIGTERM; one log line per campaign state change.

    Run as many as you like, on one machine or many sharing one PostgreSQL database.

    \b
    Example (see scripts/bulkmail-worker.service):
      bulkmail --config /etc/bulkmail.toml worker
    """
    from bulkmail.delivery.runner import worker as run
    from bulkmail.signing.policy import require_signing

    require_signing(app.settings)
    _log_to_stderr()
    logging.getLogger("bulkmail").info("worker started")
    run(app.settings, app.ready_db(), config_path=app.config_path, max_idle_sleep=max_idle_sleep)


COMMANDS = [run_due, worker]
