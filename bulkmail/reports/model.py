"""The campaign report as values: what ``build_report`` returns and every renderer reads.

One typed record per part of the report (destinations, reasons, timeline, timing), so the text,
JSON and HTML renderings cannot disagree: they format the same values. ``to_dict`` is the
``--json`` contract. The pure helpers here (median over a histogram, bucket widths, merging
buckets) carry the arithmetic, so it is unit-tested without a database.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: The outcome series of the timeline, in stacking order. "deferred" counts deferral events
#: (a delivery deferred twice counts twice); the others count deliveries by when they ended.
TIMELINE_SERIES = ("sent", "deferred", "bounced", "expired", "failed")

#: Widths a timeline bucket may take (seconds): readable steps from one second to a week.
NICE_WIDTHS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)


@dataclass(frozen=True)
class ReplySummary:
    """A reply seen ``count`` times: basic code, enhanced code, one example text."""

    code: int | None
    enhanced: str | None
    text: str
    count: int

    def __str__(self) -> str:
        text = without_codes(self.text, self.code, self.enhanced)
        parts = [str(self.code) if self.code is not None else "", self.enhanced or "", text]
        return " ".join(p for p in parts if p)


def without_codes(text: str, code: int | None, enhanced: str | None) -> str:
    """``text`` without the codes it repeats at its start: a DSN's diagnostic text and many
    servers' replies begin with ``550 5.1.1`` (or ``550-5.1.1``) themselves, which printed
    after our own code and enhanced code read ``550 5.1.1 550 5.1.1 ...``."""
    rest = text.strip()
    if code is not None and re.match(rf"{code}(?:[ -]|$)", rest):
        rest = rest[3:].lstrip(" -")
    if enhanced and re.match(rf"{re.escape(enhanced)}(?:\s|$)", rest):
        rest = rest[len(enhanced) :].lstrip()
    return rest


@dataclass(frozen=True)
class Destination:
    """One recipient domain. ``sent`` includes deliveries later marked complained (they were
    accepted); ``deferred`` is deliveries deferred at least once, ``deferrals`` the deferral
    events; ``pending`` is queued, sending or waiting for a retry now."""

    domain: str
    mx_host: str | None
    total: int
    sent: int
    deferred: int
    bounced: int
    expired: int
    failed: int
    pending: int
    deferrals: int
    median_attempts: float | None
    reply: ReplySummary | None
    # Of the delivered (``sent``): over TLS, over TLS that authenticated the server (pkix,
    # mta-sts, dane), in plaintext; and deferral events caused by a TLS policy (MTA-STS).
    over_tls: int = 0
    authenticated: int = 0
    plaintext: int = 0
    policy_deferrals: int = 0

    def tls_shares(self) -> tuple[float, float, float] | None:
        """(TLS, authenticated TLS, plaintext) as fractions of the delivered; None if none."""
        if not self.sent:
            return None
        n = self.sent
        return (self.over_tls / n, self.authenticated / n, self.plaintext / n)


@dataclass(frozen=True)
class Reason:
    """Events of one kind (bounced, deferred, expired, failed) sharing an enhanced code (or,
    without one, a basic code), with their class in the bounce taxonomy
    (``delivery.taxonomy``: invalid_recipient, policy, ...; expired and failed: the kind)."""

    kind: str
    enhanced: str | None
    code: int | None
    count: int
    category: str
    example: str


@dataclass(frozen=True)
class Bucket:
    """Outcomes in [start, start + width) seconds after the send started."""

    start: float
    counts: dict[str, int]

    @property
    def done(self) -> int:
        """Deliveries that ended in this bucket (deferrals are not an end)."""
        return sum(n for k, n in self.counts.items() if k != "deferred")


@dataclass(frozen=True)
class Timeline:
    start: float | None  # UNIX time of the first bucket (the send's start)
    bucket_seconds: float
    series: tuple[str, ...] = TIMELINE_SERIES
    buckets: list[Bucket] = field(default_factory=list)


@dataclass(frozen=True)
class Timing:
    """Seconds after the send started; ``rate`` is finished deliveries per second over the
    send so far, ``peak_rate`` the busiest bucket's."""

    started_at: float | None
    first_delivery: float | None
    last_delivery: float | None
    last_outcome: float | None
    finished: int
    rate: float | None
    peak_rate: float | None


@dataclass(frozen=True)
class CampaignReport:
    campaign: dict[str, Any]
    total: int
    counts: dict[str, int]
    events: dict[str, int]
    destinations: list[Destination]
    reasons: dict[str, list[Reason]]
    bounce_categories: dict[str, int]
    timeline: Timeline
    timing: Timing
    #: Complaint and hard-bounce rates against the brakes (``bounces.brakes.figures``).
    list_health: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``campaigns report --json`` document."""
        return asdict(self)


def median_from_histogram(histogram: Mapping[int, int]) -> float | None:
    """The median of values given as {value: how many}; None when there are none."""
    n = sum(c for c in histogram.values() if c > 0)
    if n == 0:
        return None
    ordered = sorted((v, c) for v, c in histogram.items() if c > 0)

    def nth(k: int) -> int:  # the k-th value (0-based) in sorted order
        seen = 0
        for value, count in ordered:
            seen += count
            if k < seen:
                return value
        raise AssertionError("unreachable")

    if n % 2:
        return float(nth(n // 2))
    return (nth(n // 2 - 1) + nth(n // 2)) / 2


def bucket_width(span: float, max_buckets: int) -> float:
    """The smallest readable width that covers ``span`` seconds in at most ``max_buckets``."""
    need = span / max(max_buckets, 1)
    for width in NICE_WIDTHS:
        if width * max_buckets > span:
            return float(width)
    return float(math.ceil(need / NICE_WIDTHS[-1]) * NICE_WIDTHS[-1]) or 1.0


def bucket_count(span: float, width: float, max_buckets: int) -> int:
    return max(1, min(max_buckets, int(span // width) + 1))


def merge_buckets(timeline: Timeline, at_most: int) -> Timeline:
    """The timeline with adjacent buckets summed, so it has at most ``at_most`` buckets."""
    buckets = timeline.buckets
    if len(buckets) <= at_most:
        return timeline
    group = math.ceil(len(buckets) / at_most)
    merged = []
    for i in range(0, len(buckets), group):
        part = buckets[i : i + group]
        counts = {s: sum(b.counts.get(s, 0) for b in part) for s in timeline.series}
        merged.append(Bucket(part[0].start, counts))
    return Timeline(timeline.start, timeline.bucket_seconds * group, timeline.series, merged)


ReplyRow = tuple[int | None, str | None, str | None, int]


def pick_reply(rows: Sequence[ReplyRow]) -> ReplySummary | None:
    """The most common (code, enhanced) among rows of (code, enhanced, example text, count);
    ties go to the lower code, then the enhanced code, so the choice is stable."""
    best = None
    for code, enhanced, text, count in rows:
        key = (-count, code if code is not None else 1000, enhanced or "")
        if best is None or key < best[0]:
            best = (key, ReplySummary(code, enhanced, (text or "").strip(), count))
    return best[1] if best else None


def format_seconds(seconds: float | None) -> str:
    """ "0.8s", "42.0s", "3m20s", "2h5m" for people; "-" for nothing."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    from bulkmail.delivery.retry import format_duration

    return format_duration(seconds)


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:.1f}/s" if rate < 100 else f"{rate:,.0f}/s"
