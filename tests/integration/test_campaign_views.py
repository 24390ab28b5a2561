"""What ``campaigns show``, ``campaigns list`` and ``campaigns preview`` print: times people can
read, a header over the columns, every outcome counted, and no preview for a non-member."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from bulkmail.cli.main import cli
from bulkmail.db.engine import Database


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``run(*args)``: bulkmail on the test database, [schedule] timezone Europe/Oslo, with two
    lists: news (ann, bob) and other (eve), and campaign 1 to news."""
    config = tmp_path / "bulkmail.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[schedule]\ntimezone = "Europe/Oslo"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    for name, rows in (
        ("news", "ann@example.com,Ann\nbob@example.org,Bob\n"),
        ("other", "eve@x.test,Eve\n"),
    ):
        csv = tmp_path / f"{name}.csv"
        csv.write_text(f"email,name\n{rows}", encoding="utf-8")
        assert invoke("lists", "create", name).exit_code == 0
        assert invoke("subscribers", "import", "--list", name, str(csv)).exit_code == 0
    created = invoke(
        "campaigns", "create", "--name", "May", "--list", "news", "--subject", "Hi",
        "--from", "News <news@example.com>", "--template", "newsletter",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    return invoke


def test_show_prints_times_as_iso_8601_in_the_schedule_timezone(run) -> None:  # type: ignore[no-untyped-def]
    out = run("campaigns", "show", "1").output
    created = re.search(r"created_at: (\S+)", out)
    assert created, out
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00", created.group(1)), out
    assert "scheduled_at: -" in out


def test_list_has_a_header_and_counts_skipped_and_expired(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    db = Database(db_url)
    with db.session() as s:
        for email, state in (("ann@example.com", "expired"), ("bob@example.org", "skipped")):
            sid = s.execute(text("SELECT id FROM subscribers WHERE email = :e"), {"e": email})
            s.execute(
                text("""INSERT INTO deliveries (campaign_id, subscriber_id, email, domain, state,
                        attempts, next_attempt_at, created_at, updated_at, finished_at)
                        VALUES (1, :sid, :e, :d, :state, 1, 0, 0, 0, 1)"""),
                {"sid": sid.scalar(), "e": email, "d": email.split("@")[1], "state": state},
            )
    db.dispose()
    header, line = run("campaigns", "list").output.splitlines()
    columns = header.split()
    assert columns[:5] == ["ID", "NAME", "STATE", "SCHEDULED", "DONE"]
    values = dict(zip(columns[5:], line.split()[-len(columns[5:]) :], strict=True))
    assert (values["EXPIRED"], values["SKIPPED"], values["SENT"]) == ("1", "1", "0"), line
    assert "2/2 (100%)" in line


def test_preview_refuses_an_address_not_on_the_campaigns_list(run) -> None:  # type: ignore[no-untyped-def]
    result = run("campaigns", "preview", "1", "--to", "eve@x.test")
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in result.output, err
    assert err.startswith("bulkmail: error: ") and "'news'" in err and "eve@x.test" in err
    assert not result.stdout


def test_preview_of_a_member_still_prints_the_message(run) -> None:  # type: ignore[no-untyped-def]
    result = run("campaigns", "preview", "1", "--to", "ann@example.com")
    assert result.exit_code == 0, result.output
    assert re.search(r"^To: .*ann@example\.com", result.stdout, re.M), result.stdout[:500]
