"""The suppression list on SQLite and PostgreSQL: the library, enqueue skipping, and the CLI."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from bulkmail.audience import suppressions as sup
from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.campaigns import create_campaign
from bulkmail.cli.main import cli
from bulkmail.config import parse_settings
from bulkmail.db.engine import Database
from bulkmail.db.queries import enqueue
from bulkmail.errors import InputError


def emails(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                text(  # type: ignore[misc]
                    "SELECT email, reason, source FROM suppressions ORDER BY id"
                )
            ).all()
        ]


def test_add_normalises_the_address_and_keeps_the_first_entry(db: Database) -> None:
    assert sup.add_suppression(db, " Ann@EXAMPLE.com ", "asked by phone", "manual") is True
    assert sup.add_suppression(db, "Ann@example.com", "other reason", "bounce") is False
    assert emails(db) == [("Ann@example.com", "asked by phone", "manual")]


def test_add_refuses_an_invalid_address(db: Database) -> None:
    with pytest.raises(InputError, match="'not-an-address'"):
        sup.add_suppression(db, "not-an-address")
    assert emails(db) == []


def test_remove_says_whether_the_address_was_suppressed(db: Database) -> None:
    sup.add_suppression(db, "ann@example.com")
    assert sup.remove_suppression(db, "ann@EXAMPLE.COM") is True
    assert sup.remove_suppression(db, "ann@example.com") is False
    assert emails(db) == []


def test_listing_pages_by_id_and_iterating_streams_every_entry(db: Database) -> None:
    for i in range(25):
        sup.add_suppression(db, f"u{i:02}@example.com", source="bounce" if i % 5 else "manual")
    first = sup.list_suppressions(db, limit=10)
    second = sup.list_suppressions(db, after=first[-1].id, limit=10)
    assert [e.email for e in first + second] == [f"u{i:02}@example.com" for i in range(20)]
    assert len(list(sup.iter_suppressions(db, page=7))) == 25
    assert [e.email for e in sup.iter_suppressions(db, source="manual", page=2)] == [
        f"u{i:02}@example.com" for i in (0, 5, 10, 15, 20)
    ]


def test_import_reports_rejected_lines_and_counts_existing_entries(
    db: Database, tmp_path: Path
) -> None:
    sup.add_suppression(db, "old@example.com", "kept", "bounce")
    path = tmp_path / "blocked.csv"
    path.write_text(
        "a@example.com,spam trap\nnot an address\n\nB@EXAMPLE.com\n"
        "old@example.com,new reason\na@example.com\n@x.com,y\n",
        encoding="utf-8",
    )
    result = sup.import_csv(db, path, reason="cleanup", batch=2)
    assert (result.added, result.existing) == (2, 2)
    assert [(r.line, r.text) for r in result.rejected] == [(2, "not an address"), (7, "@x.com,y")]
    assert emails(db) == [
        ("old@example.com", "kept", "bounce"),
        ("a@example.com", "spam trap", "import"),
        ("B@example.com", "cleanup", "import"),
    ]


def test_an_export_imports_back_with_reasons_and_sources(db: Database, tmp_path: Path) -> None:
    sup.add_suppression(db, "a@example.com", 'says "stop", twice', "complaint")
    sup.add_suppression(db, "b@example.com", "550 5.1.1 no such user", "bounce")
    out = io.StringIO()
    assert sup.export_csv(db, out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["email", "reason", "source", "created_at"]
    assert rows[1][:3] == ["a@example.com", 'says "stop", twice', "complaint"]
    assert rows[1][3].endswith("Z")
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    before = emails(db)
    for e in ("a@example.com", "b@example.com"):
        sup.remove_suppression(db, e)
    assert sup.import_csv(db, path).added == 2
    assert emails(db) == before


def test_a_file_that_is_not_utf8_csv_changes_nothing(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a@example.com\n" * 3000 + "b\xe9@example.com\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        sup.import_csv(db, path, batch=100)
    assert emails(db) == []


def test_suppressed_addresses_are_skipped_at_enqueue(db: Database, tmp_path: Path) -> None:
    lst = create_list(db, "news")
    people = tmp_path / "people.csv"
    people.write_text("email\nann@example.com\nbob@example.com\n", encoding="utf-8")
    import_csv(db, "news", people)
    sup.add_suppression(db, "ann@EXAMPLE.com", "complained by phone")
    cid = create_campaign(
        db,
        parse_settings({}, "test"),
        name="c",
        list_name="news",
        subject="Hi",
        from_header="News <news@example.com>",
        template="newsletter",
    ).id
    enqueue(db, cid, lst.id, time.time())
    with db.session() as s:
        rows = dict(
            s.execute(
                text("SELECT email, state FROM deliveries WHERE campaign_id = :c"), {"c": cid}
            ).all()
        )
    assert rows == {"ann@example.com": "skipped", "bob@example.com": "queued"}


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulkmail.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(
            cli,
            ["--config", str(config), "suppressions", *args],
            input=stdin,
            catch_exceptions=False,
        )

    return invoke


def test_the_suppressions_commands(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(run("add", "Ann@Example.com", "--reason", "asked", "--json").output) == {
        "email": "Ann@Example.com",
        "added": True,
    }
    assert "suppressed already" in run("add", "Ann@example.com").output
    assert json.loads(
        run("import", "-", "--source", "crm", "--json", stdin="bob@example.com,left\nnope\n").output
    ) == (
        {
            "added": 1,
            "existing": 0,
            "rejected_count": 1,
            "rejected": [
                {"line": 2, "text": "nope", "reason": "An email address must have an @-sign."}
            ],
        }
    )
    listed = json.loads(run("list", "--json").output)
    assert [(e["email"], e["reason"], e["source"]) for e in listed] == [
        ("Ann@example.com", "asked", "manual"),
        ("bob@example.com", "left", "crm"),
    ]
    assert (
        json.loads(run("list", "--json", "--after", str(listed[0]["id"]), "--limit", "5").output)[
            0
        ]["email"]
        == "bob@example.com"
    )
    assert "bob@example.com" in run("list", "--source", "crm").output
    assert run("export").output.splitlines()[1].startswith("Ann@example.com,asked,manual,")
    exported = tmp_path / "out.csv"
    assert json.loads(run("export", str(exported), "--json").output) == {
        "exported": 2,
        "file": str(exported),
    }
    assert json.loads(run("remove", "bob@example.com", "--json").output)["removed"] is True
    assert "was not suppressed" in run("remove", "bob@example.com").output
    assert "1 added, 1 already suppressed, 0 rejected" in run("import", str(exported)).output


def test_a_bad_address_or_file_is_one_line_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for result, fragment in (
        (run("add", "nope"), "'nope'"),
        (run("import", str(tmp_path / "missing.csv")), "missing.csv"),
        (run("export", str(tmp_path / "no-such-dir" / "out.csv")), "out.csv: cannot write"),
    ):
        assert result.exit_code != 0
        assert result.stderr.strip().startswith("bulkmail: error: ")
        assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
