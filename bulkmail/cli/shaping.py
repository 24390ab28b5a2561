"""``bulkmail shaping explain|status``: which site a domain joins, its limits and where each
came from, and the backoffs in force (``bulkmail.shaping.explain``)."""

from __future__ import annotations

from typing import Any

import click

from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option
from bulkmail.reports.terminal import printable


@click.group()
def shaping() -> None:
    """Traffic shaping: provider sites, their limits, adaptive backoffs."""


@shaping.command("explain")
@click.argument("domain")
@json_option
@pass_app
def shaping_explain(app: App, domain: str, as_json: bool) -> None:
    """How mail to DOMAIN is shaped: its site, MX set, limits (and which rule or config key
    set each), and the suspensions or throttles in force there now.

    \b
    Example:
      bulkmail shaping explain gmail.com
      bulkmail shaping explain example.com --json
    """
    from bulkmail.shaping.explain import explain

    data = explain(app.settings, app.ready_db(), domain)
    if as_json:
        echo_json(data)
        return
    _explain_text(data)


def _explain_text(data: dict[str, Any]) -> None:
    from bulkmail.shaping.explain import rate_text

    provider = f" (provider {data['provider']})" if data["provider"] else ""
    click.echo(f"domain: {printable(data['domain'])}")
    click.echo(f"site: {printable(data['site'])}{provider}")
    if data["route_problem"]:
        click.echo(f"route: {printable(data['route_problem'])}")
    click.echo("mx:")
    for mx in data["mx"]:
        click.echo(f"  {mx['preference']:>3} {printable(mx['host'])} {', '.join(mx['addresses'])}")
    if not data["mx"]:
        click.echo("  (none)")
    click.echo("limits:")
    for key, item in data["limits"].items():
        value = rate_text(item["value"]) if key == "rate" else item["value"]
        click.echo(f"  {key}: {value}  <- {printable(item['set_by'])}")
    now = data["now"]
    if now["suspended_until"]:
        click.echo(f"now: suspended until {now['suspended_until']}")
    else:
        click.echo(f"now: {now['connections']} connections, rate {rate_text(now['rate'])}")
    _backoffs_text(data["backoffs"], "backoffs in force: none")


def _backoffs_text(backoffs: list[dict[str, Any]], none: str) -> None:
    from bulkmail.shaping.explain import rate_text

    if not backoffs:
        click.echo(none)
        return
    click.echo("backoffs in force:")
    for b in backoffs:
        what = b["action"]
        if what == "throttle":
            parts = [f"rate {rate_text(b['rate'])}" if b["rate"] is not None else ""]
            parts.append(f"{b['connections']} connections" if b["connections"] else "")
            what += " to " + ", ".join(p for p in parts if p)
        left = f"{b['seconds_left']} s left" if b["seconds_left"] > 0 else "over"
        if b["recovering_until"]:
            left += f", undone in steps until {b['recovering_until']}"
        click.echo(
            f"  {printable(b['site'])}: {what} until {b['until']} ({left})"
            f", rule {printable(b['rule'])}, after: {printable(b['reply'])}"
        )


@shaping.command("status")
@json_option
@pass_app
def shaping_status(app: App, as_json: bool) -> None:
    """The sites suspended or throttled now, fleet-wide, with their rules and expiry.

    \b
    Example:
      bulkmail shaping status --json
    """
    from bulkmail.shaping.explain import status

    backoffs = status(app.ready_db())
    if as_json:
        echo_json({"backoffs": backoffs})
        return
    _backoffs_text(backoffs, "no site is suspended or throttled")


COMMANDS = [shaping]
