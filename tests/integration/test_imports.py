"""CSV imports from strangers' files, the same on SQLite and PostgreSQL: bad cells rejected
with their line before the database sees them, a file imported whole or not at all, the
delimiter found, and the report of rejected rows streamed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from bulkmail.audience import importer
from bulkmail.audience import suppressions as sup
from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.cli.main import cli
from bulkmail.db.engine import Database
from bulkmail.errors import InputError


def write(tmp_path: Path, body: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(body.encode("utf-8"))
    return path


def count(db: Database, table: str) -> int:
    with db.session() as s:
        return int(s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_a_nul_byte_or_an_overlong_name_rejects_that_row_only(db: Database, tmp_path: Path) -> None:
    """12,000 rows, one with a NUL, one with a 400-character name: PostgreSQL refused the
    batch (`cannot contain NUL`, `value too long for type character varying(300)`)."""
    create_list(db, "news")
    rows = [f"u{i}@example.com,Person {i},c{i}" for i in range(12000)]
    rows[5000] = "u5000@example.com,Per\x00son,c"
    rows[9000] = "u9000@example.com," + "n" * 400 + ",c"
    rows[10000] = "u10000@example.com,Ann,ci\x00ty"
    path = write(tmp_path, "email,name,city\n" + "\n".join(rows) + "\n")
    result = import_csv(db, "news", path)
    assert [(r.line, r.email, r.reason) for r in result.rejected] == [
        (5002, "u5000@example.com", "name: control character U+0000 at character 4"),
        (9002, "u9000@example.com", "name: 400 characters, longer than the 300 allowed"),
        (10002, "u10000@example.com", "city: control character U+0000 at character 3"),
    ]
    assert (result.imported, result.rejected_count) == (11997, 3)
    assert count(db, "subscribers") == 11997


def test_control_characters_are_refused_but_an_attribute_may_span_lines(
    db: Database, tmp_path: Path
) -> None:
    create_list(db, "news")
    path = write(
        tmp_path,
        'email,name,address\na@example.com,"Ann\x1b[2J",x\n'
        'b@example.com,Bob,"1 Main St\r\nSpringfield"\nc@example.com,"Cy\nril",x\n',
    )
    result = import_csv(db, "news", path)
    assert [(r.line, r.reason) for r in result.rejected] == [
        (2, "name: control character U+001B at character 4"),
        (5, "name: control character U+000A at character 3"),
    ]
    with db.session() as s:
        attrs = s.execute(text("SELECT attributes FROM subscribers")).scalar_one()
    attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
    assert attrs == {"address": "1 Main St\r\nSpringfield"}


def test_a_control_character_in_the_header_refuses_the_file(db: Database, tmp_path: Path) -> None:
    create_list(db, "news")
    with pytest.raises(InputError, match="line 1: column name: control character U\\+0000"):
        import_csv(db, "news", write(tmp_path, "email,ci\x00ty\na@example.com,x\n"))
    assert count(db, "subscribers") == 0


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, module: Any, nth: int) -> None:
    """Make the ``nth`` INSERT statement the module builds fail, as a database would."""
    real = module.insert_for
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "insert_for", failing)


def test_a_subscriber_import_failing_part_way_leaves_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_list(db, "news")
    path = write(tmp_path, "email\n" + "".join(f"u{i}@example.com\n" for i in range(500)))
    _fail_on_call(monkeypatch, importer, 5)  # two statements a batch: the third batch fails
    with pytest.raises(RuntimeError):
        import_csv(db, "news", path, batch_size=100)
    assert (count(db, "subscribers"), count(db, "memberships")) == (0, 0)


def test_a_suppressions_import_failing_part_way_leaves_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "".join(f"u{i}@example.com\n" for i in range(500)), "s.csv")
    _fail_on_call(monkeypatch, sup, 3)
    with pytest.raises(RuntimeError):
        sup.import_csv(db, path, batch=100)
    assert count(db, "suppressions") == 0


def test_suppressions_import_rejects_nul_and_overlong_cells_with_their_line(
    db: Database, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "email,reason,source\na@example.com,spam\x00trap,crm\n"
        f"b@example.com,ok,{'s' * 51}\nc@example.com,fine,crm\n",
        "s.csv",
    )
    result = sup.import_csv(db, path)
    assert [(r.line, r.reason) for r in result.rejected] == [
        (2, "reason: control character U+0000 at character 5"),
        (3, "source: 51 characters, longer than the 50 allowed"),
    ]
    assert [e.email for e in sup.iter_suppressions(db)] == ["c@example.com"]
    with pytest.raises(InputError, match="--reason: control character U\\+0000"):
        sup.add_suppression(db, "d@example.com", reason="x\x00y")


def test_rejections_stream_and_only_the_first_are_kept(db: Database, tmp_path: Path) -> None:
    create_list(db, "news")
    path = write(tmp_path, "email\n" + "".join(f"bad{i}\n" for i in range(1000)))
    seen: list[int] = []
    result = import_csv(db, "news", path, on_reject=lambda r: seen.append(r.line))
    assert seen == list(range(2, 1002))
    assert (len(result.rejected), result.rejected_count) == (100, 1000)
    blocked = write(tmp_path, "".join(f"bad{i}\n" for i in range(300)), "s.csv")
    lines: list[int] = []
    res = sup.import_csv(db, blocked, on_reject=lambda r: lines.append(r.line))
    assert (len(lines), len(res.rejected), res.rejected_count) == (300, 100, 300)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_delimiter_is_found_from_the_header(db: Database, tmp_path: Path, sep: str) -> None:
    create_list(db, "news")
    body = f"email{sep}name{sep}city\nann@example.com{sep}Ann{sep}Rome, Italy\n"
    result = import_csv(db, "news", write(tmp_path, body))
    assert (result.imported, result.rejected) == (1, [])
    with db.session() as s:
        name, attrs = s.execute(text("SELECT name, attributes FROM subscribers")).one()
    attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
    assert (name, attrs) == ("Ann", {"city": "Rome, Italy"})
    blocked = write(tmp_path, f"b@example.com{sep}spam, really\n", "s.csv")
    assert sup.import_csv(db, blocked).added == 1
    assert [(e.email, e.reason) for e in sup.iter_suppressions(db)] == [
        ("b@example.com", "spam, really")
    ]


def test_a_header_without_email_in_any_delimiter_says_how_to_separate(
    db: Database, tmp_path: Path
) -> None:
    create_list(db, "news")
    with pytest.raises(InputError, match="no 'email' column .*commas, semicolons, tabs or \\|"):
        import_csv(db, "news", write(tmp_path, "mail;name\na@example.com;Ann\n"))


# -- the CLI's report -----------------------------------------------------------------------


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulkmail.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    invoke.config_args = ["--config", str(config)]  # type: ignore[attr-defined]
    return invoke


def test_the_json_report_lists_every_rejection_and_text_shows_the_first(  # type: ignore[no-untyped-def]
    run, db: Database, tmp_path: Path
) -> None:
    create_list(db, "news")
    path = write(tmp_path, "email\nok@example.com\n" + "".join(f"bad{i}\n" for i in range(120)))
    report = json.loads(run("subscribers", "import", "--list", "news", str(path), "--json").output)
    assert (report["imported"], report["updated"], report["rejected_count"]) == (1, 0, 120)
    assert [r["line"] for r in report["rejected"]] == list(range(3, 123))
    shown = run("subscribers", "import", "--list", "news", str(path))
    assert "imported 0, updated 1, rejected 120" in shown.stdout
    assert len([ln for ln in shown.stderr.splitlines() if ln.startswith("  line ")]) == 50
    assert "... and 70 more (use --json for all)" in shown.stderr
    blocked = write(tmp_path, "\x1b]2;owned\x07@x,\n", "s.csv")
    text_out = run("suppressions", "import", str(blocked))
    assert "\x1b" not in text_out.stderr and "\\x1b]2;owned\\x07@x" in text_out.stderr


def test_a_refused_file_writes_no_json_at_all(run, db: Database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_list(db, "news")
    path = write(tmp_path, "mail,name\na@example.com,Ann\n")
    result = CliRunner().invoke(
        cli,
        [*run.config_args, "subscribers", "import", "--list", "news", str(path), "--json"],
    )
    assert result.exit_code != 0 and result.stdout == ""
    assert "no 'email' column" in result.stderr
    clean = json.loads(
        run("suppressions", "import", str(write(tmp_path, "a@x.test\n", "s.csv")), "--json").output
    )
    assert clean == {"rejected": [], "added": 1, "existing": 0, "rejected_count": 0}
