"""Building a campaign report: every figure aggregated in the database with GROUP BY.

A campaign may have ten million deliveries, so no query here returns one row per delivery:
state counts and the per-destination table are GROUP BY queries, the median number of attempts
is taken from a histogram (deliveries per attempts value, per domain), the timeline puts
``finished_at`` into buckets computed in SQL, and the reasons are events grouped by kind and
status code with ``MIN(text)`` as the example. Per-domain detail queries run only for the top
domains. Every query works on SQLite and PostgreSQL (the only difference: PostgreSQL's float to
integer cast rounds, so it FLOORs first).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, text

from bulkmail.bounces.brakes import Brakes, figures, health
from bulkmail.campaigns import get_campaign
from bulkmail.db.engine import Database
from bulkmail.db.models import (
    BOUNCED,
    COMPLAINED,
    DEFERRED,
    DELIVERY_STATES,
    EXPIRED,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
)
from bulkmail.delivery.classify import Reply, classify_reply
from bulkmail.delivery.dane import DANE_PREFIX
from bulkmail.delivery.stspolicy import POLICY_PREFIX
from bulkmail.reports.model import (
    TIMELINE_SERIES,
    Bucket,
    CampaignReport,
    Destination,
    Reason,
    ReplySummary,
    Timeline,
    Timing,
    bucket_count,
    bucket_width,
    median_from_histogram,
    pick_reply,
)

REASON_KINDS = ("bounced", "deferred", "expired", "failed")
DELIVERED = (SENT, COMPLAINED)  # accepted by the receiving server
ENDED = (SENT, COMPLAINED, BOUNCED, EXPIRED, FAILED)  # attempted and final


def build_report(
    db: Database,
    campaign_id: int,
    *,
    top: int = 20,
    buckets: int = 60,
    reasons: int = 10,
    limits: Brakes | None = None,
) -> CampaignReport:
    """The report of one campaign: ``top`` destinations, ``reasons`` per kind, a timeline of at
    most ``buckets`` buckets, the list health against ``limits`` (the [bounces] brakes).
    NotFoundError if there is no such campaign."""
    c = get_campaign(db, campaign_id)
    with db.session() as s:
        counts = dict.fromkeys(DELIVERY_STATES, 0)
        counts.update(
            _pairs(
                s,
                "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = :cid GROUP BY state",
                campaign_id,
            )
        )
        events = _pairs(
            s,
            "SELECT kind, COUNT(*) FROM events WHERE campaign_id = :cid "
            "GROUP BY kind ORDER BY kind",
            campaign_id,
        )
        destinations = _destinations(s, campaign_id, top)
        grouped = _reasons(s, campaign_id, reasons)
        start = c.started_at
        if start is None:
            start = s.execute(
                text("SELECT MIN(first_attempt_at) FROM deliveries WHERE campaign_id = :cid"),
                {"cid": campaign_id},
            ).scalar()
        timeline = _timeline(s, campaign_id, start, buckets, sqlite=db.sqlite)
        timing = _timing(s, campaign_id, start, timeline)
        list_health = figures(health(s, campaign_id), limits or Brakes())
    categories: dict[str, int] = defaultdict(int)
    for r in grouped.get("bounced", []):
        categories[r.category] += r.count
    campaign = {
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "subject": c.subject,
        "scheduled_at": c.scheduled_at,
        "started_at": c.started_at,
        "finished_at": c.finished_at,
    }
    return CampaignReport(
        campaign=campaign,
        total=sum(counts.values()),
        counts=counts,
        events=events,
        destinations=destinations,
        reasons=grouped,
        bounce_categories=dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))),
        timeline=timeline,
        timing=timing,
        list_health=list_health,
    )


def _pairs(s: Any, sql: str, campaign_id: int) -> dict[str, int]:
    return {k: int(n) for k, n in s.execute(text(sql), {"cid": campaign_id}).all()}


def _in_list(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _destinations(s: Any, campaign_id: int, top: int) -> list[Destination]:
    """The ``top`` domains by deliveries, with their detail (five GROUP BY queries)."""
    sums = ", ".join(
        f"SUM(CASE WHEN state IN ({_in_list(list(states))}) THEN 1 ELSE 0 END)"
        for states in (DELIVERED, (BOUNCED,), (EXPIRED,), (FAILED,), (QUEUED, SENDING, DEFERRED))
    )
    rows = s.execute(
        text(f"""
        SELECT domain, COUNT(*) AS total, {sums} FROM deliveries WHERE campaign_id = :cid
        GROUP BY domain ORDER BY total DESC, domain LIMIT :top"""),
        {"cid": campaign_id, "top": top},
    ).all()
    if not rows:
        return []
    detail = _DomainDetail(s, campaign_id, [r[0] for r in rows])
    deferrals, attempts, mx, replies = (
        detail.deferrals(),
        detail.attempts(),
        detail.mx(),
        detail.replies(),
    )
    tls = detail.tls()
    out = []
    for domain, total, sent, bounced, expired, failed, pending in rows:
        n_deferrals, n_deferred, n_policy = deferrals.get(domain, (0, 0, 0))
        over_tls, authenticated, plaintext = tls.get(domain, (0, 0, 0))
        out.append(
            Destination(
                domain=domain,
                mx_host=mx.get(domain),
                total=int(total),
                sent=int(sent),
                deferred=n_deferred,
                bounced=int(bounced),
                expired=int(expired),
                failed=int(failed),
                pending=int(pending),
                deferrals=n_deferrals,
                median_attempts=median_from_histogram(attempts.get(domain, {})),
                reply=pick_reply(replies.get(domain, [])),
                over_tls=over_tls,
                authenticated=authenticated,
                plaintext=plaintext,
                policy_deferrals=n_policy,
            )
        )
    return out


class _DomainDetail:
    """Per-domain GROUP BY queries restricted to the listed domains of one campaign."""

    def __init__(self, s: Any, campaign_id: int, domains: list[str]) -> None:
        self.s, self.params = s, {"cid": campaign_id, "domains": domains}

    def _rows(self, sql: str) -> list[Any]:
        stmt = text(sql).bindparams(bindparam("domains", expanding=True))
        return list(self.s.execute(stmt, self.params).all())

    def deferrals(self) -> dict[str, tuple[int, int, int]]:
        """domain: (deferral events, deliveries deferred at least once, deferral events
        caused by a TLS policy: their text starts with ``POLICY_PREFIX`` or ``DANE_PREFIX``)."""
        return {
            d: (int(n), int(k), int(p or 0))
            for d, n, k, p in self._rows(f"""
            SELECT d.domain, COUNT(*), COUNT(DISTINCT e.delivery_id),
                   SUM(CASE WHEN e.text LIKE '{POLICY_PREFIX}%' OR e.text LIKE '{DANE_PREFIX}%'
                       THEN 1 ELSE 0 END)
            FROM events e JOIN deliveries d ON d.id = e.delivery_id
            WHERE e.campaign_id = :cid AND e.kind = '{DEFERRED}' AND d.domain IN :domains
            GROUP BY d.domain""")
        }

    def tls(self) -> dict[str, tuple[int, int, int]]:
        """domain: delivered (over TLS, over authenticated TLS, in plaintext). ``tls`` holds
        "none" for plaintext, "TLSv1.3 verified" and the like otherwise."""
        return {
            d: (int(t or 0), int(a or 0), int(p or 0))
            for d, t, a, p in self._rows(f"""
            SELECT domain,
                   SUM(CASE WHEN tls IS NOT NULL AND tls <> 'none' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN tls_authenticated THEN 1 ELSE 0 END),
                   SUM(CASE WHEN tls = 'none' THEN 1 ELSE 0 END)
            FROM deliveries
            WHERE campaign_id = :cid AND domain IN :domains
              AND state IN ({_in_list(list(DELIVERED))})
            GROUP BY domain""")
        }

    def attempts(self) -> dict[str, dict[int, int]]:
        """domain: {attempts: deliveries} (the histogram the median comes from)."""
        out: dict[str, dict[int, int]] = defaultdict(dict)
        for d, a, n in self._rows("""
                SELECT domain, attempts, COUNT(*) FROM deliveries
                WHERE campaign_id = :cid AND domain IN :domains AND attempts > 0
                GROUP BY domain, attempts"""):
            out[d][int(a)] = int(n)
        return out

    def mx(self) -> dict[str, str]:
        """domain: its most used MX host (ties: the first by name)."""
        best: dict[str, tuple[int, str]] = {}
        for d, host, n in self._rows("""
                SELECT domain, mx_host, COUNT(*) FROM deliveries
                WHERE campaign_id = :cid AND domain IN :domains AND mx_host IS NOT NULL
                GROUP BY domain, mx_host"""):
            if d not in best or (-n, host) < (-best[d][0], best[d][1]):
                best[d] = (int(n), host)
        return {d: host for d, (_, host) in best.items()}

    def replies(self) -> dict[str, list[tuple[Any, ...]]]:
        """domain: [(code, enhanced, example text, deliveries)] of their last replies."""
        out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for d, code, enhanced, example, n in self._rows("""
                SELECT domain, last_code, last_enhanced, MIN(last_text), COUNT(*) FROM deliveries
                WHERE campaign_id = :cid AND domain IN :domains AND last_code IS NOT NULL
                GROUP BY domain, last_code, last_enhanced"""):
            out[d].append((code, enhanced, example, int(n)))
        return out


def _reasons(s: Any, campaign_id: int, limit: int) -> dict[str, list[Reason]]:
    """Events per kind grouped by enhanced code (basic code when there is none), most first."""
    rows = s.execute(
        text(f"""
        SELECT kind, code, enhanced, COUNT(*), MIN(text) FROM events
        WHERE campaign_id = :cid AND kind IN ({_in_list(list(REASON_KINDS))})
        GROUP BY kind, code, enhanced"""),
        {"cid": campaign_id},
    ).all()
    merged: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for kind, code, enhanced, n, example in rows:
        merged[(kind, enhanced or f"code {code}")].append((code, enhanced, example, int(n)))
    out: dict[str, list[Reason]] = {kind: [] for kind in REASON_KINDS}
    for (kind, _), group in merged.items():
        reply = pick_reply(group)
        assert reply is not None
        count = sum(g[3] for g in group)
        out[kind].append(
            Reason(kind, reply.enhanced, reply.code, count, _category(kind, reply), str(reply))
        )
    for kind in out:
        out[kind].sort(key=lambda r: (-r.count, r.enhanced or "", r.code or 0))
        del out[kind][limit:]
    return out


def _category(kind: str, reply: ReplySummary) -> str:
    """The taxonomy's class (``delivery.taxonomy``), the vocabulary the classifier, the
    events and the suppressions share; an expiry or a local failure is its kind."""
    if kind in ("expired", "failed") or reply.code is None:
        return kind
    return classify_reply(Reply(reply.code, reply.text, reply.enhanced)).bounce_class.value


def _bucket_sql(column: str, sqlite: bool) -> str:
    ratio = f"(({column} - :t0) / :width)"
    return f"CAST({ratio} AS INTEGER)" if sqlite else f"CAST(FLOOR({ratio}) AS INTEGER)"


def _timeline(
    s: Any, campaign_id: int, start: float | None, max_buckets: int, sqlite: bool
) -> Timeline:
    """Outcomes per bucket of time from the start of the send to its last outcome."""
    if start is None:
        return Timeline(None, 0.0)
    end = s.execute(
        text(f"""
        SELECT MAX(t) FROM (
            SELECT MAX(finished_at) AS t FROM deliveries WHERE campaign_id = :cid
            UNION ALL
            SELECT MAX(created_at) AS t FROM events
            WHERE campaign_id = :cid AND kind = '{DEFERRED}') AS ends"""),
        {"cid": campaign_id},
    ).scalar()
    span = max((end or start) - start, 0.0)
    width = bucket_width(span, max_buckets)
    n = bucket_count(span, width, max_buckets)
    grid = [dict.fromkeys(TIMELINE_SERIES, 0) for _ in range(n)]
    params = {"cid": campaign_id, "t0": start, "width": width}
    ended = _in_list(list(ENDED))
    for b, state, count in s.execute(
        text(f"""
            SELECT {_bucket_sql("finished_at", sqlite)} AS b, state, COUNT(*) FROM deliveries
            WHERE campaign_id = :cid AND finished_at IS NOT NULL AND state IN ({ended})
            GROUP BY 1, 2"""),
        params,
    ).all():
        series = SENT if state in DELIVERED else state
        grid[min(max(int(b), 0), n - 1)][series] += int(count)
    for b, count in s.execute(
        text(f"""
            SELECT {_bucket_sql("created_at", sqlite)} AS b, COUNT(*) FROM events
            WHERE campaign_id = :cid AND kind = '{DEFERRED}' GROUP BY 1"""),
        params,
    ).all():
        grid[min(max(int(b), 0), n - 1)]["deferred"] += int(count)
    return Timeline(
        start, width, TIMELINE_SERIES, [Bucket(i * width, counts) for i, counts in enumerate(grid)]
    )


def _timing(s: Any, campaign_id: int, start: float | None, timeline: Timeline) -> Timing:
    """First and last delivery, last outcome and rates, in seconds after the start."""
    row = s.execute(
        text(f"""
        SELECT MIN(CASE WHEN state IN ({_in_list(list(DELIVERED))}) THEN finished_at END),
               MAX(CASE WHEN state IN ({_in_list(list(DELIVERED))}) THEN finished_at END),
               MAX(finished_at), COUNT(finished_at)
        FROM deliveries WHERE campaign_id = :cid AND state IN ({_in_list(list(ENDED))})"""),
        {"cid": campaign_id},
    ).one()
    first, last, last_outcome, finished = row[0], row[1], row[2], int(row[3] or 0)

    def after(t: float | None) -> float | None:
        return None if t is None or start is None else max(t - start, 0.0)

    elapsed = after(last_outcome)
    rate = finished / elapsed if elapsed and finished else None
    peak = max((b.done for b in timeline.buckets), default=0)
    peak_rate = peak / timeline.bucket_seconds if peak and timeline.bucket_seconds else None
    return Timing(
        started_at=start,
        first_delivery=after(first),
        last_delivery=after(last),
        last_outcome=elapsed,
        finished=finished,
        rate=rate,
        peak_rate=peak_rate,
    )
