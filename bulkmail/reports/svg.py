"""Charts as inline SVG, drawn in Python: the HTML report needs no script and fetches nothing.

Three shapes cover the report: columns stacked by series over time, horizontal bars stacked by
series per row (destinations), and a donut of parts of a whole (bounce categories). Each chart
is accessible (``role="img"``, a ``<title>`` and a ``<desc>``), labels its axes and legend with
real text, and gives every mark a tooltip ``<title>`` and ``data-series``/``data-value``
attributes, so a test (or a person with a screen reader) can read the figures back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\""


@dataclass(frozen=True)
class Series:
    name: str
    color: str


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= value (the top of an axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _open(
    ident: str, title: str, desc: str, width: float, height: float, stretch: bool = True
) -> list[str]:
    """The opening of a chart; ``stretch``: fill the page's width, else keep its own size."""
    size = 'width="100%"' if stretch else f'width="{_fmt(width)}" height="{_fmt(height)}"'
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(ident)}" '
        f'role="img" aria-labelledby="{escape(ident)}-t {escape(ident)}-d" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}" {size} {FONT} font-size="12">',
        f'<title id="{escape(ident)}-t">{escape(title)}</title>',
        f'<desc id="{escape(ident)}-d">{escape(desc)}</desc>',
    ]


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out, pos = ['<g class="legend">'], x
    for s in series:
        out.append(
            f'<rect x="{_fmt(pos)}" y="{_fmt(y - 10)}" width="12" height="12" fill="{s.color}"/>'
        )
        out.append(f'<text x="{_fmt(pos + 16)}" y="{_fmt(y)}">{escape(s.name)}</text>')
        pos += 28 + 7 * len(s.name)
    out.append("</g>")
    return out


def _bar(x: float, y: float, w: float, h: float, s: Series, value: int, label: str) -> str:
    return (
        f'<rect class="bar" x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(w)}" '
        f'height="{_fmt(h)}" fill="{s.color}" data-series="{escape(s.name)}" '
        f'data-value="{value}"><title>{escape(label)}: {escape(s.name)} {value}</title></rect>'
    )


def stacked_columns(
    ident: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    values: Sequence[Sequence[int]],
    width: float = 960,
    height: float = 320,
) -> str:
    """Columns, one per label, each stacking ``values[i][j]`` for series j (e.g. outcomes per
    minute). Labels are thinned to about twelve along the axis."""
    left, right, top, bottom = 48.0, 12.0, 34.0, 40.0
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((sum(v) for v in values), default=0)
    ymax = nice_ceiling(peak)
    out = _open(ident, title, desc, width, height) + _legend(series, left, 16)
    for frac in (0, 0.5, 1):  # gridlines and y labels
        y = top + plot_h * (1 - frac)
        out.append(
            f'<line x1="{_fmt(left)}" x2="{_fmt(width - right)}" y1="{_fmt(y)}" '
            f'y2="{_fmt(y)}" stroke="#ddd"/>'
        )
        out.append(
            f'<text class="tick" x="{_fmt(left - 6)}" y="{_fmt(y + 4)}" '
            f'text-anchor="end">{_fmt(ymax * frac)}</text>'
        )
    n = max(len(labels), 1)
    step, every = plot_w / n, max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        x, y = left + i * step, top + plot_h
        for s, v in zip(series, values[i], strict=True):
            if v <= 0:
                continue
            h = plot_h * v / ymax
            y -= h
            out.append(_bar(x + step * 0.1, y, step * 0.8, h, s, v, label))
        if i % every == 0:
            out.append(
                f'<text class="label" x="{_fmt(x + step / 2)}" '
                f'y="{_fmt(top + plot_h + 16)}" text-anchor="middle">{escape(label)}</text>'
            )
    if peak == 0:
        out.append(
            f'<text x="{_fmt(width / 2)}" y="{_fmt(top + plot_h / 2)}" '
            f'text-anchor="middle">no data</text>'
        )
    out.append(
        f'<line x1="{_fmt(left)}" x2="{_fmt(width - right)}" y1="{_fmt(top + plot_h)}" '
        f'y2="{_fmt(top + plot_h)}" stroke="#666"/>'
    )
    out.append("</svg>")
    return "\n".join(out)


def stacked_rows(
    ident: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    values: Sequence[Sequence[int]],
    width: float = 960,
    row_height: float = 24,
) -> str:
    """Horizontal bars, one per label, each stacking ``values[i][j]`` for series j (e.g. the
    outcomes per destination), with the row's total written after its bar."""
    left, right, top = 180.0, 60.0, 34.0
    plot_w = width - left - right
    height = top + row_height * max(len(labels), 1) + 10
    peak = max((sum(v) for v in values), default=0) or 1
    out = _open(ident, title, desc, width, height) + _legend(series, left, 16)
    for i, label in enumerate(labels):
        y, x = top + i * row_height, left
        out.append(
            f'<text class="label" x="{_fmt(left - 8)}" y="{_fmt(y + row_height * 0.65)}" '
            f'text-anchor="end">{escape(label[:28])}</text>'
        )
        for s, v in zip(series, values[i], strict=True):
            if v <= 0:
                continue
            w = plot_w * v / peak
            out.append(_bar(x, y + 3, w, row_height - 6, s, v, label))
            x += w
        out.append(
            f'<text class="total" x="{_fmt(x + 6)}" y="{_fmt(y + row_height * 0.65)}">'
            f"{sum(values[i])}</text>"
        )
    if not labels:
        out.append(
            f'<text x="{_fmt(width / 2)}" y="{_fmt(top + 14)}" text-anchor="middle">no data</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def donut(
    ident: str, title: str, desc: str, parts: Sequence[tuple[Series, int]], size: float = 260
) -> str:
    """A ring split into ``parts`` (series, value), with a legend giving each value and share."""
    total = sum(v for _, v in parts if v > 0)
    width, r, stroke = size + 260, size * 0.33, size * 0.16
    cx = cy = size / 2
    circumference = 2 * math.pi * r
    out = _open(ident, title, desc, width, size, stretch=False)
    out.append(
        f'<circle cx="{_fmt(cx)}" cy="{_fmt(cy)}" r="{_fmt(r)}" fill="none" '
        f'stroke="#eee" stroke-width="{_fmt(stroke)}"/>'
    )
    offset = 0.0
    for s, v in parts:
        if v <= 0:
            continue
        length = circumference * v / total
        out.append(
            f'<circle class="slice" cx="{_fmt(cx)}" cy="{_fmt(cy)}" r="{_fmt(r)}" fill="none" '
            f'stroke="{s.color}" stroke-width="{_fmt(stroke)}" '
            f'stroke-dasharray="{length:.3f} {circumference:.3f}" '
            f'stroke-dashoffset="{-offset:.3f}" transform="rotate(-90 {_fmt(cx)} {_fmt(cy)})" '
            f'data-series="{escape(s.name)}" data-value="{v}">'
            f"<title>{escape(s.name)}: {v}</title></circle>"
        )
        offset += length
    out.append(
        f'<text x="{_fmt(cx)}" y="{_fmt(cy + 6)}" text-anchor="middle" '
        f'font-size="20">{total}</text>'
    )
    y = 30.0
    for s, v in parts:
        share = f"{100 * v / total:.0f}%" if total else "0%"
        out.append(
            f'<rect x="{_fmt(size + 10)}" y="{_fmt(y - 11)}" width="12" height="12" '
            f'fill="{s.color}"/>'
        )
        out.append(
            f'<text class="label" x="{_fmt(size + 28)}" y="{_fmt(y)}">'
            f"{escape(s.name)}: {v} ({share})</text>"
        )
        y += 22
    if not total:
        out.append(f'<text x="{_fmt(cx)}" y="{_fmt(cy + 30)}" text-anchor="middle">none</text>')
    out.append("</svg>")
    return "\n".join(out)
