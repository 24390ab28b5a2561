"""The campaign report for a terminal: rich tables, one per part of the report.

The timeline is merged to at most 20 rows and drawn as a bar of block characters, so a send's
shape (a steady rate, a stall, bounces starting midway) shows at a glance without a chart.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bulkmail.bounces.brakes import describe
from bulkmail.reports.lines import format_time
from bulkmail.reports.model import CampaignReport, format_rate, format_seconds, merge_buckets
from bulkmail.reports.terminal import printable

TIMELINE_ROWS = 20
BAR_WIDTH = 30


def print_report(report: CampaignReport, console: Console) -> None:
    """Print every section of ``report`` on ``console``. Text that came from outside (replies,
    names, domains) goes through :func:`_safe`: no terminal escapes, no rich markup."""
    c = report.campaign
    console.print(
        f"[bold]Campaign {c['id']}[/bold] {escape(printable(repr(c['name'])))}: {c['state']}, "
        f"{report.total} deliveries, started {format_time(c['started_at'])}, "
        f"finished {format_time(c['finished_at'])}",
        highlight=False,
    )
    console.print(_counts(report))
    if report.events:
        console.print("Events: " + ", ".join(f"{k} {v}" for k, v in report.events.items()))
    console.print(_timing(report))
    console.print(_destinations(report))
    if any(d.sent or d.policy_deferrals for d in report.destinations):
        console.print(_tls(report))
    for kind, rows in report.reasons.items():
        if rows:
            console.print(_reasons(kind, report))
    if report.list_health:
        console.print("List health: " + escape(describe(report.list_health)), highlight=False)
    if report.bounce_categories:
        console.print(
            "Bounce classes: " + ", ".join(f"{k} {v}" for k, v in report.bounce_categories.items()),
            highlight=False,
        )
    console.print(_timeline(report))


def _safe(value: object) -> Text:
    """A table cell showing ``value`` as written: control characters visible, markup inert."""
    return Text(printable(value))


def _table(title: str, *columns: str, numeric: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    for col in columns:
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold")
    return table


def _counts(report: CampaignReport) -> Table:
    table = _table(
        "Deliveries by state", "State", "Deliveries", "Share", numeric=("Deliveries", "Share")
    )
    for state, n in report.counts.items():
        if n:
            table.add_row(state, str(n), f"{100 * n / report.total:.1f}%")
    table.add_row("total", str(report.total), "", style="bold")
    return table


def _timing(report: CampaignReport) -> Table:
    t = report.timing
    table = _table("Throughput", "Measure", "Value", numeric=("Value",))
    table.add_row("first delivery after start", format_seconds(t.first_delivery))
    table.add_row("last delivery after start", format_seconds(t.last_delivery))
    table.add_row("last outcome after start", format_seconds(t.last_outcome))
    table.add_row("finished deliveries", str(t.finished))
    table.add_row("rate over the send", format_rate(t.rate))
    table.add_row(
        f"peak rate ({format_seconds(report.timeline.bucket_seconds)} buckets)",
        format_rate(t.peak_rate),
    )
    return table


def _destinations(report: CampaignReport) -> Table:
    numeric = ("Total", "Sent", "Deferred", "Bounced", "Expired", "Pending", "Attempts")
    table = _table(
        "Destinations", "Domain", "MX host", *numeric, "Most common reply", numeric=numeric
    )
    for d in report.destinations:
        median = "-" if d.median_attempts is None else f"{d.median_attempts:g}"
        reply = f"{d.reply} (x{d.reply.count})" if d.reply else "-"
        table.add_row(
            _safe(d.domain),
            _safe(d.mx_host or "-"),
            str(d.total),
            str(d.sent),
            str(d.deferred),
            str(d.bounced),
            str(d.expired),
            str(d.pending),
            median,
            _safe(reply),
        )
    table.caption = (
        "Deferred: deliveries deferred at least once. Attempts: median. "
        "Pending: queued, sending or awaiting a retry."
    )
    return table


def _tls(report: CampaignReport) -> Table:
    """Per destination: how the delivered went (TLS, authenticated TLS, plaintext) and how
    many deferrals a TLS policy (MTA-STS) caused."""
    numeric = ("Delivered", "TLS", "Authenticated", "Plaintext", "Policy deferrals")
    table = _table("TLS per destination", "Domain", *numeric, numeric=numeric)
    for d in report.destinations:
        shares = d.tls_shares()
        cells = [f"{100 * x:.1f}%" for x in shares] if shares else ["-", "-", "-"]
        table.add_row(_safe(d.domain), str(d.sent), *cells, str(d.policy_deferrals))
    table.caption = (
        "Shares of the delivered. Authenticated: the server's certificate checked (pkix, "
        "MTA-STS or DANE). Policy deferrals: deferral events an MTA-STS policy caused."
    )
    return table


def _reasons(kind: str, report: CampaignReport) -> Table:
    table = _table(
        f"{kind.capitalize()}: reasons",
        "Code",
        "Events",
        "Category",
        "Example reply",
        numeric=("Events",),
    )
    for r in report.reasons[kind]:
        table.add_row(
            r.enhanced or (str(r.code) if r.code is not None else "-"),
            str(r.count),
            r.category,
            _safe(r.example),
        )
    return table


def _timeline(report: CampaignReport) -> Table:
    timeline = merge_buckets(report.timeline, TIMELINE_ROWS)
    series = timeline.series
    table = _table(
        f"Outcomes per {format_seconds(timeline.bucket_seconds)}",
        "From",
        *series,
        "",
        numeric=("From", *series),
    )
    peak = max((sum(b.counts.values()) for b in timeline.buckets), default=0) or 1
    for b in timeline.buckets:
        bar = "█" * round(BAR_WIDTH * sum(b.counts.values()) / peak)
        table.add_row(f"+{format_seconds(b.start)}", *(str(b.counts[s]) for s in series), bar)
    return table


def report_console(width: int = 160) -> Console:
    """A console for the report: the terminal's width, or ``width`` when output is piped."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=width, soft_wrap=False)
    return console
