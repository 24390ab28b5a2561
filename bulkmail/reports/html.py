"""The campaign report as one self-contained HTML file.

Jinja2 renders ``report.html.j2`` (beside this module) with inline CSS and the charts of
``svg.py`` inlined as SVG: the file fetches nothing when opened and needs no script, so it can
be mailed, archived or opened offline. The tables show the same figures as the terminal report.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
from markupsafe import Markup

from bulkmail.bounces.brakes import describe
from bulkmail.errors import InputError
from bulkmail.reports import svg
from bulkmail.reports.lines import format_time
from bulkmail.reports.model import CampaignReport, format_rate, format_seconds

TEMPLATE = "report.html.j2"

#: One colour per outcome, the same in every chart.
OUTCOME_COLORS = {
    "sent": "#2e7d32",
    "deferred": "#f9a825",
    "bounced": "#c62828",
    "expired": "#757575",
    "failed": "#6a1b9a",
    "pending": "#90caf9",
}
#: One colour per bounce class (``delivery.taxonomy``): red for the suppressing ones.
CATEGORY_COLORS = {
    "invalid_recipient": "#c62828",
    "bad_domain": "#b71c1c",
    "inactive_mailbox": "#ad1457",
    "quota": "#f9a825",
    "policy": "#ef6c00",
    "spam_block": "#e65100",
    "spam_content": "#ff8f00",
    "virus": "#4e342e",
    "content": "#6a1b9a",
    "routing": "#00838f",
    "protocol": "#283593",
    "relaying": "#1565c0",
    "expired": "#757575",
    "transient": "#26a69a",
    "uncategorised": "#9e9e9e",
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(seconds=format_seconds, rate=format_rate, time=format_time)
    return env


def timeline_chart(report: CampaignReport) -> str:
    t = report.timeline
    series = [svg.Series(name, OUTCOME_COLORS[name]) for name in t.series]
    labels = [format_seconds(b.start) if b.start < 60 else _compact(b.start) for b in t.buckets]
    values = [[b.counts.get(name, 0) for name in t.series] for b in t.buckets]
    width = format_seconds(t.bucket_seconds)
    return svg.stacked_columns(
        "chart-timeline",
        "Deliveries over time by outcome",
        f"Outcomes per {width} since the send started: sent, deferred (deferral events), "
        "bounced, expired and failed deliveries.",
        labels,
        series,
        values,
    )


def destinations_chart(report: CampaignReport) -> str:
    names = ("sent", "bounced", "expired", "failed", "pending")
    series = [svg.Series(name, OUTCOME_COLORS[name]) for name in names]
    rows = report.destinations
    values = [[getattr(d, name) for name in names] for d in rows]
    return svg.stacked_rows(
        "chart-destinations",
        "Outcome per destination",
        f"Deliveries of the top {len(rows)} recipient domains by outcome.",
        [d.domain for d in rows],
        series,
        values,
    )


def categories_chart(report: CampaignReport) -> str:
    parts = [
        (svg.Series(name, CATEGORY_COLORS.get(name, "#757575")), n)
        for name, n in report.bounce_categories.items()
    ]
    return svg.donut(
        "chart-bounces",
        "Bounce classes",
        "Bounce events by class (invalid_recipient, policy, spam_block, quota, ...).",
        parts,
    )


def _compact(seconds: float) -> str:
    from bulkmail.delivery.retry import format_duration

    return format_duration(seconds)


def render_html(report: CampaignReport, generated_at: float | None = None) -> str:
    """The report as an HTML document (a string)."""
    stamp = generated_at if generated_at is not None else dt.datetime.now(dt.UTC).timestamp()
    template = _environment().get_template(TEMPLATE)
    return template.render(
        r=report,
        generated_at=stamp,
        colors=OUTCOME_COLORS,
        counts=[(k, v) for k, v in report.counts.items() if v],
        list_health=describe(report.list_health) if report.list_health else "",
        charts={
            "timeline": Markup(timeline_chart(report)),
            "destinations": Markup(destinations_chart(report)),
            "bounces": Markup(categories_chart(report)),
        },
    )


def write_html(report: CampaignReport, path: str | Path) -> Path:
    """Write the HTML report to ``path``; InputError naming the file if it cannot be written."""
    target = Path(path).expanduser()
    try:
        target.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--html {str(path)!r}: cannot write: {exc.strerror or exc}") from None
    return target
