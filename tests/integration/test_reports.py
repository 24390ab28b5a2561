"""Campaign reports and the event export, against real sends and real databases.

``send_known_campaign`` sends to servers on loopback with outcomes chosen in advance: 10
recipients on a.test accepted; on b.test 3 unknown users (550 5.1.1) and 1 refused by policy
(550 5.7.1); 2 on c.test greylisted, then accepted on the retry; 1 on broken.test whose DNS
answers SERVFAIL, deferred once and expired on the second attempt (retry after 1 s, then 30 s;
max_age 10 s: the first failure is deferred unless recording it takes 8.9 s, the second expires
however late it comes, so a loaded machine changes no outcome). Every
figure of the text, JSON and HTML reports is checked against that, or against the rows the send
wrote (times).
"""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from bulkmail.cli.main import cli
from bulkmail.db.engine import Database
from bulkmail.peers.smtp import Script
from bulkmail.reports import build_report, campaign_lines, export_events, format_campaign_line
from bulkmail.reports.export import bench_export
from bulkmail.reports.model import format_rate, format_seconds
from tests.integration.world import SENDING_DOMAIN, World

MX = {
    d: f"mx-127-0-0-{n}.{SENDING_DOMAIN}" for d, n in (("a.test", 2), ("b.test", 3), ("c.test", 4))
}
# domain: total, sent, deferred (at least once), bounced, expired, pending, median attempts,
# most common reply, its count
DESTINATIONS = {
    "a.test": (10, 10, 0, 0, 0, 0, 1.0, "250 2.0.0 OK: queued", 10),
    "b.test": (4, 0, 0, 4, 0, 0, 1.0, "550 5.1.1 No such user", 3),
    "c.test": (2, 2, 2, 0, 0, 0, 2.0, "250 2.0.0 OK: queued", 2),
    "broken.test": (
        1,
        0,
        1,
        0,
        1,
        0,
        2.0,
        "451 4.4.3 Temporary DNS failure: MX lookup for broken.test: SERVFAIL",
        1,
    ),
}
REASONS = {  # kind: [(code, events, taxonomy class, example)]
    "bounced": [
        ("5.1.1", 3, "invalid_recipient", "550 5.1.1 No such user"),
        ("5.7.1", 1, "policy", "550 5.7.1 Rejected by policy"),
    ],
    "deferred": [
        ("4.7.1", 2, "policy", "451 4.7.1 Greylisted, try again"),
        ("4.4.3", 1, "routing", DESTINATIONS["broken.test"][7]),
    ],
    "expired": [("4.4.3", 1, "expired", DESTINATIONS["broken.test"][7])],
}


def send_known_campaign(w: World) -> int:
    w.configure("retry", intervals=["1s", "30s"], max_age="10s")
    w.mx("a.test", (10, "127.0.0.2"))
    w.mx(
        "b.test",
        (10, "127.0.0.3"),
        script=Script(
            rcpt_replies={
                **{f"user{i}@b.test": "550 5.1.1 No such user" for i in range(3)},
                "blocked@b.test": "550 5.7.1 Rejected by policy",
            }
        ),
    )
    w.mx("c.test", (10, "127.0.0.4"), script=Script(greylist=True))
    w.zone.servfail("broken.test")
    w.subscribers(
        [f"user{i}@a.test" for i in range(10)]
        + [f"user{i}@b.test" for i in range(3)]
        + ["blocked@b.test"]
        + ["user0@c.test", "user1@c.test", "x@broken.test"]
    )
    cid = w.campaign()
    assert w.send(cid, wait=True).state == "finished"
    return cid


def run(w: World, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(w.config_path()), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def expected_timing(w: World, cid: int) -> dict[str, float]:
    """Times straight from the rows the send wrote."""
    start = w.sql("SELECT started_at FROM campaigns WHERE id = :c", c=cid)[0][0]
    first, last = w.sql(
        "SELECT MIN(finished_at), MAX(finished_at) FROM deliveries "
        "WHERE campaign_id = :c AND state = 'sent'",
        c=cid,
    )[0]
    end = w.sql("SELECT MAX(finished_at) FROM deliveries WHERE campaign_id = :c", c=cid)[0][0]
    return {
        "start": start,
        "first": first - start,
        "last": last - start,
        "end": end - start,
        "rate": 17 / (end - start),
    }


def test_json_report_holds_every_figure_of_the_send(world: World) -> None:
    cid = send_known_campaign(world)
    data = json.loads(run(world, "campaigns", "report", str(cid), "--json"))
    assert data["campaign"]["id"] == cid and data["campaign"]["state"] == "finished"
    assert data["total"] == 17
    assert {k: v for k, v in data["counts"].items() if v} == {
        "sent": 12,
        "bounced": 4,
        "expired": 1,
    }
    assert data["events"] == {"bounced": 4, "deferred": 3, "expired": 1, "sent": 12}
    rows = {d["domain"]: d for d in data["destinations"]}
    assert list(rows) == ["a.test", "b.test", "c.test", "broken.test"]  # most deliveries first
    for domain, (
        total,
        sent,
        deferred,
        bounced,
        expired,
        pending,
        median,
        reply,
        n,
    ) in DESTINATIONS.items():
        d = rows[domain]
        assert (
            d["total"],
            d["sent"],
            d["deferred"],
            d["bounced"],
            d["expired"],
            d["pending"],
            d["median_attempts"],
        ) == (total, sent, deferred, bounced, expired, pending, median)
        r = d["reply"]
        assert (" ".join(str(x) for x in (r["code"], r["enhanced"], r["text"])), r["count"]) == (
            reply,
            n,
        )
        assert d["mx_host"] == MX.get(domain)
    assert rows["c.test"]["deferrals"] == 2 and rows["broken.test"]["deferrals"] == 1
    for kind, expected in REASONS.items():
        got = [
            (r["enhanced"], r["count"], r["category"], r["example"]) for r in data["reasons"][kind]
        ]
        assert got == expected
    assert data["reasons"]["failed"] == []
    assert data["bounce_categories"] == {"invalid_recipient": 3, "policy": 1}
    # List health: the 5.7.1 policy bounce is not a stale list; 3 of 17 is past the brake,
    # shown as such, but under the 1,000-attempt sample the brake waits for.
    health = data["list_health"]
    assert (health["delivered"], health["complaints"], health["complaint_level"]) == (12, 0, "ok")
    assert (health["attempted"], health["hard_bounces"]) == (17, 3)
    assert (health["bounce_rate"], health["bounce_level"]) == (round(3 / 17, 6), "brake")
    assert (health["complaint_warn_rate"], health["complaint_brake_rate"]) == (0.001, 0.003)
    t = expected_timing(world, cid)
    timing = data["timing"]
    assert timing["started_at"] == pytest.approx(t["start"])
    assert timing["first_delivery"] == pytest.approx(t["first"])
    assert timing["last_delivery"] == pytest.approx(t["last"])
    assert timing["last_outcome"] == pytest.approx(t["end"])
    assert timing["finished"] == 17
    assert timing["rate"] == pytest.approx(t["rate"])
    check_timeline(world, cid, data["timeline"], timing)


def check_timeline(w: World, cid: int, timeline: dict[str, Any], timing: dict[str, Any]) -> None:
    """Each bucket holds exactly the outcomes whose time falls in it (recomputed here)."""
    width, start = timeline["bucket_seconds"], timeline["start"]
    assert width == 1.0  # the send takes 1-2 s: one-second buckets
    expected = [dict.fromkeys(timeline["series"], 0) for _ in timeline["buckets"]]
    for state, at in w.sql(
        "SELECT state, finished_at FROM deliveries WHERE campaign_id = :c", c=cid
    ):
        expected[int((at - start) // width)][state] += 1
    for (at,) in w.sql(
        "SELECT created_at FROM events WHERE campaign_id = :c AND kind = 'deferred'", c=cid
    ):
        expected[int((at - start) // width)]["deferred"] += 1
    assert [b["counts"] for b in timeline["buckets"]] == expected
    assert [b["start"] for b in timeline["buckets"]] == [float(i) for i in range(len(expected))]
    totals = {s: sum(b["counts"][s] for b in timeline["buckets"]) for s in timeline["series"]}
    assert totals == {"sent": 12, "deferred": 3, "bounced": 4, "expired": 1, "failed": 0}
    busiest = max(
        sum(v for k, v in b["counts"].items() if k != "deferred") for b in timeline["buckets"]
    )
    assert timing["peak_rate"] == busiest / width


def cells(output: str, first: str) -> list[str]:
    """The cells of the rich table row whose first cell is ``first``."""
    for line in output.splitlines():
        parts = [p.strip() for p in line.split("│")]
        if len(parts) > 2 and parts[1] == first:
            return parts[1:-1]
    raise AssertionError(f"no row {first!r} in:\n{output}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_text_report_shows_every_figure_of_the_send(world: World) -> None:
    cid = send_known_campaign(world)
    out = run(world, "campaigns", "report", str(cid))
    assert f"Campaign {cid} 'test': finished, 17 deliveries" in out
    assert cells(out, "sent")[:2] == ["sent", "12"]
    assert cells(out, "bounced")[:2] == ["bounced", "4"]
    assert cells(out, "expired")[:2] == ["expired", "1"]
    assert cells(out, "total")[:2] == ["total", "17"]
    assert "Events: bounced 4, deferred 3, expired 1" in out
    for domain, (
        total,
        sent,
        deferred,
        bounced,
        expired,
        pending,
        median,
        reply,
        n,
    ) in DESTINATIONS.items():
        row = cells(out, domain)
        assert row[1] == MX.get(domain, "-")
        assert row[2:9] == [
            str(total),
            str(sent),
            str(deferred),
            str(bounced),
            str(expired),
            str(pending),
            f"{median:g}",
        ]
        if len(reply) < 40:  # the long one wraps onto a second line
            assert row[9] == f"{reply} (x{n})"
    for kind, expected in REASONS.items():
        section = out.split(f"{kind.capitalize()}: reasons")[1]
        for code, count, category, example in expected:
            assert cells(section, code)[:4] == [code, str(count), category, example]
    assert "Bounce classes: invalid_recipient 3, policy 1" in out
    assert (
        "List health: complaints 0.00% (0 of 12 delivered): ok (warn 0.10%, brake 0.30% from "
        "1,000 delivered); hard bounces 17.65% (3 of 17 attempted): AT THE BRAKE (warn 2.00%, "
        "brake 5.00% from 1,000 attempted)"
    ) in " ".join(out.split())
    t = expected_timing(world, cid)
    assert cells(out, "first delivery after start")[1] == format_seconds(t["first"])
    assert cells(out, "last delivery after start")[1] == format_seconds(t["last"])
    assert cells(out, "finished deliveries")[1] == "17"
    assert cells(out, "rate over the send")[1] == format_rate(t["rate"])
    timeline = out.split("Outcomes per 1.0s")[1]
    buckets = [cells(timeline, f"+{i:.1f}s") for i in range(2) if f"+{i:.1f}s" in timeline]
    sums = [sum(int(row[i]) for row in buckets) for i in range(1, 6)]
    assert sums == [12, 3, 4, 1, 0]  # sent, deferred, bounced, expired, failed


class ReportPage(HTMLParser):
    """Reads the figures back out of the HTML report."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, str] = {}
        self.rows: dict[str, list[str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: dict[str, str] = {}
        self.marks: dict[str, list[tuple[str, int]]] = {}
        self._stack: list[tuple[str, dict[str, str | None]]] = []
        self._chart: str | None = None
        self._kind: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._capture: tuple[str, str] | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))
        if tag == "svg":
            self._chart = a.get("id")
            self.marks[str(self._chart)] = []
        if a.get("data-series") and self._chart:
            self.marks[self._chart].append((str(a["data-series"]), int(str(a["data-value"]))))
        if tag == "table" and a.get("data-kind"):
            self._kind = a["data-kind"]
            self.tables[str(self._kind)] = []
        if tag == "tr":
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag == "div" and a.get("data-state"):
            self._capture = ("card", str(a["data-state"]))
        if tag == "td" and a.get("id"):
            self._capture = ("id", str(a["id"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr" and self._row:
            if self._kind:
                self.tables[self._kind].append(self._row)
            else:
                self.rows[self._row[0]] = self._row
            self._row = None
        if tag == "table":
            self._kind = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._capture and data.strip():
            kind, key = self._capture
            (self.cards if kind == "card" else self.ids)[key] = data.strip()
            self._capture = None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_html_report_shows_every_figure_and_draws_the_charts(world: World) -> None:
    cid = send_known_campaign(world)
    path = world.root / "report.html"
    run(world, "campaigns", "report", str(cid), "--html", str(path))
    page = ReportPage()
    page.feed(path.read_text(encoding="utf-8"))
    assert page.external == []  # self-contained: nothing to fetch
    assert page.cards == {"total": "17", "sent": "12", "bounced": "4", "expired": "1"}
    for domain, (
        total,
        sent,
        deferred,
        bounced,
        expired,
        pending,
        median,
        reply,
        n,
    ) in DESTINATIONS.items():
        assert page.rows[domain][1:] == [
            MX.get(domain, "-"),
            str(total),
            str(sent),
            str(deferred),
            str(bounced),
            str(expired),
            str(pending),
            f"{median:g}",
            f"{reply} (×{n})",
        ]
    for kind, expected in REASONS.items():
        assert page.tables[kind] == [[c, str(n), cat, ex] for c, n, cat, ex in expected]
    t = expected_timing(world, cid)
    assert page.ids["first-delivery"] == format_seconds(t["first"])
    assert page.ids["last-delivery"] == format_seconds(t["last"])
    assert page.ids["finished"] == "17"
    assert page.ids["rate"] == format_rate(t["rate"])
    html = " ".join(path.read_text(encoding="utf-8").split())
    assert (
        '<p class="meta" id="list-health">List health: complaints 0.00% (0 of 12 delivered): ok'
    ) in html and "hard bounces 17.65% (3 of 17 attempted): AT THE BRAKE" in html

    def totals(chart: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for series, value in page.marks[chart]:
            out[series] = out.get(series, 0) + value
        return out

    assert totals("chart-timeline") == {"sent": 12, "deferred": 3, "bounced": 4, "expired": 1}
    assert page.marks["chart-destinations"] == [
        ("sent", 10),
        ("bounced", 4),
        ("sent", 2),
        ("expired", 1),
    ]
    assert page.marks["chart-bounces"] == [("invalid_recipient", 3), ("policy", 1)]


def test_report_of_a_missing_campaign_is_a_one_line_error(world: World) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(world.config_path()), "campaigns", "report", "999"]
    )
    assert result.exit_code == 1
    assert "bulkmail: error: no campaign with id 999" in result.output


# -- Synthetic campaigns: exact times, many domains ---------------------------------------------


def make_campaign(
    db: Database,
    cid: int,
    *,
    started_at: float | None,
    deliveries: list[tuple[str, str, int, float | None]],
    state: str = "running",
    scheduled_at: float | None = None,
) -> None:
    """A campaign with deliveries (email, state, attempts, finished_at) written directly."""
    with db.session() as s:
        s.execute(
            text(
                "INSERT INTO lists (id, name, created_at) VALUES (:c, :n, 0) ON CONFLICT DO NOTHING"
            ),
            {"c": cid, "n": f"list{cid}"},
        )
        s.execute(
            text("""INSERT INTO campaigns (id, name, subject, from_header, template,
                          list_id, state, state_reason, scheduled_at, enqueued, created_at,
                          started_at) VALUES (:c, :n, 's', 'f <f@x.test>', 't', :c, :state, '',
                          :sched, true, 0, :start)"""),
            {
                "c": cid,
                "n": f"campaign {cid}",
                "state": state,
                "sched": scheduled_at,
                "start": started_at,
            },
        )
        for email, dstate, attempts, finished in deliveries:
            sid = s.execute(
                text("SELECT id FROM subscribers WHERE email = :e"), {"e": email}
            ).scalar()
            if sid is None:
                sid = s.execute(
                    text("""INSERT INTO subscribers (email, domain, name, attributes,
                                        created_at, updated_at) VALUES (:e, :d, '', '{}', 0, 0)
                                        RETURNING id"""),
                    {"e": email, "d": email.split("@")[1]},
                ).scalar()
            s.execute(
                text("""INSERT INTO deliveries (campaign_id, subscriber_id, email, domain,
                              state, attempts, next_attempt_at, created_at, updated_at,
                              finished_at) VALUES (:c, :sid, :e, :d, :st, :a, 0, 0, 0, :f)"""),
                {
                    "c": cid,
                    "sid": sid,
                    "e": email,
                    "d": email.split("@")[1],
                    "st": dstate,
                    "a": attempts,
                    "f": finished,
                },
            )


def test_timeline_buckets_finished_deliveries_by_the_minute_and_stops_at_sixty(
    db: Database,
) -> None:
    t0 = 1_700_000_000.0
    rows = [(f"u{i}@x.test", "sent", 1, t0 + 60 * i + 30) for i in range(90)]  # 90 minutes
    rows += [("late@y.test", "bounced", 3, t0 + 89 * 60 + 59), ("q@y.test", "queued", 0, None)]
    make_campaign(db, 1, started_at=t0, deliveries=rows)
    report = build_report(db, 1, buckets=60)
    assert report.timeline.bucket_seconds == 120.0  # 90 minutes in <= 60 readable buckets
    assert len(report.timeline.buckets) == 45
    assert [b.counts["sent"] for b in report.timeline.buckets] == [2] * 45
    assert report.timeline.buckets[-1].counts["bounced"] == 1
    assert report.timing.first_delivery == 30.0
    assert report.timing.last_delivery == 89 * 60 + 30
    assert report.timing.last_outcome == 89 * 60 + 59
    assert report.timing.rate == pytest.approx(91 / (89 * 60 + 59))
    assert report.timing.peak_rate == pytest.approx(3 / 120)  # the last: 2 sent, 1 bounced
    assert [
        (d.domain, d.total, d.sent, d.bounced, d.pending, d.median_attempts)
        for d in report.destinations
    ] == [("x.test", 90, 90, 0, 0, 1.0), ("y.test", 2, 0, 1, 1, 3.0)]


def test_destinations_are_the_top_domains_by_deliveries(db: Database) -> None:
    rows = [(f"u{i}@d{n}.test", "sent", 1 + i % 2, 10.0 + i) for n in range(1, 6) for i in range(n)]
    make_campaign(db, 1, started_at=0.0, deliveries=rows)
    report = build_report(db, 1, top=3)
    assert [(d.domain, d.total, d.median_attempts) for d in report.destinations] == [
        ("d5.test", 5, 1.0),
        ("d4.test", 4, 1.5),
        ("d3.test", 3, 1.0),
    ]


def test_a_campaign_not_yet_sent_has_an_empty_report(db: Database) -> None:
    make_campaign(
        db, 1, started_at=None, deliveries=[("a@x.test", "queued", 0, None)], state="scheduled"
    )
    report = build_report(db, 1)
    assert report.counts["queued"] == 1 and report.total == 1
    assert report.timeline.buckets == [] and report.timing.rate is None
    assert report.reasons == {"bounced": [], "deferred": [], "expired": [], "failed": []}
    from bulkmail.reports.html import render_html
    from bulkmail.reports.text import print_report, report_console

    assert "no data" in render_html(report)
    print_report(report, report_console())


def test_html_report_to_an_unwritable_place_is_an_input_error(db: Database, tmp_path) -> None:
    from bulkmail.errors import InputError
    from bulkmail.reports.html import write_html

    make_campaign(db, 1, started_at=None, deliveries=[])
    with pytest.raises(InputError, match="--html .*missing.*cannot write"):
        write_html(build_report(db, 1), tmp_path / "missing" / "report.html")


def test_campaign_lines_give_state_schedule_progress_and_rate(db: Database) -> None:
    make_campaign(
        db,
        1,
        started_at=1000.0,
        state="running",
        deliveries=[
            ("a@x.test", "sent", 1, 1010.0),
            ("b@x.test", "bounced", 1, 1020.0),
            ("c@x.test", "deferred", 1, None),
            ("d@x.test", "queued", 0, None),
            ("e@x.test", "skipped", 0, None),
        ],
    )
    make_campaign(
        db, 2, started_at=None, state="scheduled", scheduled_at=1_714_554_000.0, deliveries=[]
    )
    one, two = campaign_lines(db)
    assert {
        k: one[k]
        for k in (
            "id",
            "state",
            "total",
            "done",
            "pending",
            "sent",
            "deferred",
            "bounced",
            "skipped",
        )
    } == {
        "id": 1,
        "state": "running",
        "total": 5,
        "done": 3,
        "pending": 2,
        "sent": 1,
        "deferred": 1,
        "bounced": 1,
        "skipped": 1,
    }
    assert one["progress"] == pytest.approx(0.6)
    assert one["rate"] == pytest.approx(2 / 20)  # two attempted and final in 20 s
    assert (two["total"], two["progress"], two["rate"]) == (0, 0.0, None)
    line = format_campaign_line(one)
    assert "running" in line and "3/5 (60%)" in line and "0.1/s" in line
    assert "2024-05-01 09:00Z" in format_campaign_line(two)


# -- The event export --------------------------------------------------------------------------


def add_events(db: Database, n: int, campaign_id: int, t0: float) -> None:
    with db.session() as s:
        s.execute(
            text("""INSERT INTO events (kind, campaign_id, email, code, enhanced, text,
                          attempt, source, created_at) VALUES (:k, :c, :e, 550, '5.1.1',
                          :t, 1, 'engine', :at)"""),
            [
                {
                    "k": "bounced",
                    "c": campaign_id,
                    "e": f"u{i}@x.test",
                    "t": f'No such user, "u{i}"',
                    "at": t0 + i,
                }
                for i in range(n)
            ],
        )


def test_export_streams_every_event_in_order_across_batches(db: Database) -> None:
    add_events(db, 7, campaign_id=1, t0=1000.0)
    add_events(db, 6, campaign_id=2, t0=2000.0)
    out = io.StringIO()
    assert export_events(db, out, batch=4) == 13
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [int(r["id"]) for r in rows] == list(range(1, 14))
    assert rows[0]["email"] == "u0@x.test" and rows[0]["text"] == 'No such user, "u0"'
    assert rows[0]["time"] == "1970-01-01T00:16:40.000+00:00"
    assert rows[0]["mx_host"] == ""  # NULL is an empty cell


def test_export_filters_by_campaign_and_since_as_json_lines(db: Database) -> None:
    add_events(db, 7, campaign_id=1, t0=1000.0)
    add_events(db, 6, campaign_id=2, t0=2000.0)
    out = io.StringIO()
    assert export_events(db, out, campaign_id=2, since=2003.0, fmt="jsonl", batch=2) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["campaign_id"], e["created_at"], e["code"]) for e in lines] == [
        (2, 2003.0, 550),
        (2, 2004.0, 550),
        (2, 2005.0, 550),
    ]
    assert export_events(db, io.StringIO(), since=9999.0) == 0


def test_events_export_command_writes_csv_to_stdout(world: World) -> None:
    db = world.db()
    add_events(db, 3, campaign_id=5, t0=1_714_554_000.0)
    db.dispose()
    out = run(world, "events", "export", "--campaign", "5", "--since", "2024-05-01T09:00:01")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["email"] for r in rows] == ["u1@x.test", "u2@x.test"]
    bad = CliRunner().invoke(
        cli, ["--config", str(world.config_path()), "events", "export", "--since", "someday"]
    )
    assert bad.exit_code == 1 and "bulkmail: error: --since 'someday'" in bad.output


def test_export_benchmark_counts_rows_and_cleans_up(db_url: str) -> None:
    result = bench_export(db_url, n=3000)
    assert result["rows"] == 3000 and result["events"] == 3000
    assert result["rows_per_second"] > 0 and result["peak_rss_mb"] > 0
    db = Database(db_url)
    with db.session() as s:
        assert s.execute(text("SELECT COUNT(*) FROM events")).scalar() == 0
    db.dispose()
