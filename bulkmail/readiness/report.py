"""How a readiness Report is shown: a rich table for people, a list of dicts for machines.

Remedies are DNS records and settings meant to be pasted, so they are printed after the
table, each on its own line and never wrapped or styled (rich markup is off for them: a
``[dkim]`` in a remedy is text, not a style).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bulkmail.readiness.checker import Report
from bulkmail.readiness.requirements import PROVIDERS
from bulkmail.readiness.results import FAIL, INCONCLUSIVE, PASS, WARN

STYLES = {PASS: "green", WARN: "yellow", FAIL: "bold red", INCONCLUSIVE: "magenta"}
_MET = {PASS: "met", FAIL: "NOT MET", INCONCLUSIVE: "unknown"}


def report_json(report: Report) -> list[dict[str, Any]]:
    """The checks, then one entry per provider: ``{"check", "status", "detail", "remedy"}``."""
    return [r.as_dict() for r in (*report.results, *report.providers)]


def render(report: Report, console: Console) -> None:
    """The results table, the remedies, and the providers' requirements."""
    table = Table(title="Sender readiness", title_justify="left", expand=False)
    table.add_column("Check", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Finding")
    for r in report.results:
        table.add_row(Text(r.check), Text(r.status, style=STYLES[r.status]), Text(r.detail))
    console.print(table)
    todo = [r for r in report.results if r.remedy and r.status != PASS]
    if todo:
        console.print(Text("To do:", style="bold"))
        for r in todo:
            console.print(
                Text(f"  {r.check}: ", style=STYLES[r.status]) + Text(r.remedy),
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
    console.print(_requirements_table(report))
    for r in report.providers:
        console.print(
            Text(f"{r.subject}: ", style="bold")
            + Text(_MET[r.status], style=STYLES[r.status])
            + Text(f" - {r.detail}"),
            soft_wrap=True,
            highlight=False,
        )


def _requirements_table(report: Report) -> Table:
    table = Table(title="Bulk-sender requirements", title_justify="left", expand=False)
    table.add_column("Requirement")
    for provider in PROVIDERS:
        table.add_column(provider, no_wrap=True)
    for verdict in report.requirements:
        cells = [
            Text(_MET[verdict.status], style=STYLES[verdict.status])
            if provider in verdict.providers
            else Text("-", style="dim")
            for provider in PROVIDERS
        ]
        table.add_row(Text(verdict.name), *cells)
    return table
