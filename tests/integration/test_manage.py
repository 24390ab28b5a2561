"""Audience and campaign management through the CLI, on SQLite and PostgreSQL:
``subscribers list|show|remove|export``, ``lists show|rename|delete``,
``campaigns clone|edit|delete``, and ``--forget`` keeping only a hashed suppression."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from bulkmail.audience.forget import forgotten_key
from bulkmail.cli.main import cli
from bulkmail.db.engine import Database, now
from bulkmail.db.queries import claim, enqueue

PEOPLE = (
    "email,name,city,plan\n"
    "ann@example.com,Ann,Oslo,pro\n"
    "bob@example.org,Bob,,free\n"
    "cy@example.net,Cy,Oslo,\n"
    "dee@example.com,=HYPERLINK(1),Rome,pro\n"
)


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulkmail.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            cli, ["--config", str(config), *args], input=input, catch_exceptions=False
        )

    assert invoke("init").exit_code == 0
    assert invoke("lists", "create", "news").exit_code == 0
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    assert (
        invoke("subscribers", "import", "--list", "news", str(tmp_path / "people.csv")).exit_code
        == 0
    )
    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output + result.stderr
    return result


def error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output + err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def emails(result: Result) -> list[str]:
    return [s["email"] for s in json.loads(result.output)["subscribers"]]


def create_campaign(run, name: str = "May") -> int:  # type: ignore[no-untyped-def]
    out = ok(
        run(
            "campaigns",
            "create",
            "--name",
            name,
            "--list",
            "news",
            "--subject",
            "Hi {{ subscriber.name }}",
            "--from",
            "News <news@example.com>",
            "--template",
            "newsletter",
            "--json",
        )
    )
    return int(json.loads(out.output)["id"])


def test_subscribers_list_filters_by_list_state_attribute_and_suppression(run) -> None:  # type: ignore[no-untyped-def]
    everyone = ["ann@example.com", "bob@example.org", "cy@example.net", "dee@example.com"]
    assert emails(ok(run("subscribers", "list", "--json"))) == everyone
    assert emails(run("subscribers", "list", "--attribute", "city=Oslo", "--json")) == [
        "ann@example.com",
        "cy@example.net",
    ]
    assert emails(run("subscribers", "list", "--attribute", "plan", "--json")) == [
        "ann@example.com",
        "bob@example.org",
        "dee@example.com",
    ]
    ok(run("suppressions", "add", "BOB@example.org"))
    assert emails(run("subscribers", "list", "--suppressed", "--json")) == ["bob@example.org"]
    assert "bob@example.org" not in emails(run("subscribers", "list", "--not-suppressed", "--json"))
    ok(run("lists", "create", "other"))
    assert emails(run("subscribers", "list", "--list", "other", "--json")) == []
    assert (
        emails(run("subscribers", "list", "--list", "news", "--state", "unsubscribed", "--json"))
        == []
    )
    error(run("subscribers", "list", "--list", "ghost"), "no list named 'ghost'")


def test_subscribers_list_pages_by_keyset(run) -> None:  # type: ignore[no-untyped-def]
    first = json.loads(ok(run("subscribers", "list", "--limit", "3", "--json")).output)
    assert [s["email"] for s in first["subscribers"]][-1] == "cy@example.net"
    after = str(first["next_after"])
    second = json.loads(
        ok(run("subscribers", "list", "--limit", "3", "--after", after, "--json")).output
    )
    assert [s["email"] for s in second["subscribers"]] == ["dee@example.com"]
    assert second["next_after"] is None
    text = ok(run("subscribers", "list", "--limit", "3"))
    assert f"more: --after {after}" in text.stderr


def test_subscribers_show_gives_memberships_attributes_suppressions(run) -> None:  # type: ignore[no-untyped-def]
    ok(run("suppressions", "add", "ann@example.com", "--reason", "asked by phone"))
    data = json.loads(ok(run("subscribers", "show", "ANN@example.com", "--json")).output)
    assert data["email"] == "ann@example.com"
    assert data["attributes"] == {"city": "Oslo", "plan": "pro"}
    assert [(m["list"], m["status"]) for m in data["memberships"]] == [("news", "subscribed")]
    assert [(x["source"], x["reason"]) for x in data["suppressions"]] == [
        ("manual", "asked by phone")
    ]
    text = ok(run("subscribers", "show", "ann@example.com")).output
    assert "news" in text and "asked by phone" in text
    error(run("subscribers", "show", "nobody@example.com"), "no subscriber 'nobody@example.com'")


def test_subscribers_remove_asks_refuses_without_terminal_and_takes_yes(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    cid = create_campaign(run)
    db = Database(db_url)
    enqueue(db, cid, 1, now())
    error(run("subscribers", "remove", "ann@example.com"), "pass --yes")
    assert "ann@example.com" in emails(run("subscribers", "list", "--list", "news", "--json"))
    ok(run("subscribers", "remove", "ann@example.com", "--yes"))
    assert "ann@example.com" not in emails(run("subscribers", "list", "--list", "news", "--json"))
    with db.session() as s:
        row = s.execute(
            text("SELECT state, last_text FROM deliveries WHERE email = 'ann@example.com'")
        ).one()
    assert tuple(row) == ("skipped", "removed")
    db.dispose()


def test_confirmation_on_a_terminal(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("bulkmail.cli.confirm.on_terminal", lambda: True)
    declined = run("lists", "delete", "news", input="n\n")
    assert declined.exit_code != 0
    assert "news" in ok(run("lists", "list")).output
    ok(run("lists", "delete", "news", input="y\n"))
    assert "news" not in run("lists", "list").output


def test_forget_erases_and_a_reimport_is_still_never_mailed(
    run, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ok(run("suppressions", "add", "ann@example.com", "--reason", "old"))
    db = Database(db_url)
    with db.session() as s:  # a case duplicate that migration 0003 retired holds it too
        s.execute(
            text(
                "INSERT INTO subscribers (email, email_key, domain, name, attributes, created_at,"
                " updated_at) VALUES ('ANN@example.com', NULL, 'example.com', 'Ann', '{}', 0, 0)"
            )
        )
    out = json.loads(
        ok(run("subscribers", "remove", "Ann@Example.com", "--forget", "--yes", "--json")).output
    )
    assert out["forgotten"] is True and out["key"].startswith("sha256:")
    with db.session() as s:
        dump = " ".join(
            str(v)
            for table in ("subscribers", "suppressions", "memberships", "events", "deliveries")
            for row in s.execute(text(f"SELECT * FROM {table}")).all()
            for v in row
        )
    assert "ann@" not in dump.lower() and "Oslo pro" not in dump
    error(run("subscribers", "show", "ann@example.com"), "no subscriber", "it was forgotten")
    # The address comes back in another case: enqueue skips it, and so does the claim.
    (tmp_path / "again.csv").write_text("email,name\nANN@example.com,Ann\n", encoding="utf-8")
    ok(run("subscribers", "import", "--list", "news", str(tmp_path / "again.csv")))
    assert emails(run("subscribers", "list", "--suppressed", "--json")) == ["ANN@example.com"]
    cid = create_campaign(run)
    enqueue(db, cid, 1, now())
    with db.session() as s:
        states = dict(s.execute(text("SELECT email, state FROM deliveries")).all())
    assert states["ANN@example.com"] == "skipped"
    assert states["bob@example.org"] == "queued"
    db.dispose()


def test_claim_skips_an_address_forgotten_after_enqueue(run, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = Database(db_url)
    # The claim's own check: a hashed suppression that appears after enqueue (the address
    # forgotten while another subscriber row of it, re-imported, was already queued).
    cid = create_campaign(run)
    with db.session() as s:
        s.execute(text("UPDATE campaigns SET state = 'running', enqueued = :t"), {"t": True})
    enqueue(db, cid, 1, now())
    with db.session() as s:
        s.execute(
            text(
                "INSERT INTO suppressions (email, email_key, reason, source, created_at) "
                "VALUES (:k, :k, 'erased', 'forget', 0)"
            ),
            {"k": forgotten_key("bob@example.org")},
        )
    claimed = claim(db, [cid], "me", now() + 1, 60, 100)
    assert "bob@example.org" not in [c.email for c in claimed]
    assert len(claimed) == 3
    with db.session() as s:
        row = s.execute(
            text("SELECT state, last_text FROM deliveries WHERE email = 'bob@example.org'")
        ).one()
    assert tuple(row) == ("skipped", "suppressed")
    db.dispose()


def test_subscribers_export_imports_back_and_neutralises_formulas(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "out.csv"
    assert "exported 4" in ok(run("subscribers", "export", str(target))).output
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert list(rows[0]) == ["email", "name", "city", "plan"]
    assert rows[0] == {"email": "ann@example.com", "name": "Ann", "city": "Oslo", "plan": "pro"}
    assert rows[3]["name"] == "'=HYPERLINK(1)"
    oslo = ok(run("subscribers", "export", "--attribute", "city=Oslo"))
    assert oslo.stdout.count("\n") == 3 and "exported 2" in oslo.stderr
    ok(run("lists", "create", "copy"))
    imported = ok(run("subscribers", "import", "--list", "copy", str(target), "--json"))
    assert json.loads(imported.output)["updated"] == 4


def test_lists_show_rename_delete(run) -> None:  # type: ignore[no-untyped-def]
    ok(run("suppressions", "add", "cy@example.net"))
    data = json.loads(ok(run("lists", "show", "news", "--json")).output)
    assert (data["subscribed"], data["unsubscribed"], data["suppressed"]) == (4, 0, 1)
    ok(run("lists", "rename", "news", "weekly"))
    error(run("lists", "show", "news"), "no list named 'news'")
    ok(run("lists", "create", "other"))
    error(run("lists", "rename", "weekly", "other"), "already exists")
    cid = create_campaign_on(run, "weekly")
    error(run("lists", "delete", "weekly", "--yes"), f"has campaigns ({cid})")
    ok(run("campaigns", "delete", str(cid), "--yes"))
    assert "deleted (4 memberships)" in ok(run("lists", "delete", "weekly", "--yes")).output
    assert emails(run("subscribers", "list", "--json"))  # the subscribers stay


def create_campaign_on(run, list_name: str) -> int:  # type: ignore[no-untyped-def]
    out = ok(
        run(
            "campaigns",
            "create",
            "--name",
            "X",
            "--list",
            list_name,
            "--subject",
            "S",
            "--from",
            "News <news@example.com>",
            "--template",
            "newsletter",
            "--json",
        )
    )
    return int(json.loads(out.output)["id"])


def test_campaigns_clone_edit_delete_only_before_sending(run, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cid = create_campaign(run)
    copy = json.loads(ok(run("campaigns", "clone", str(cid), "--json")).output)["id"]
    shown = json.loads(ok(run("campaigns", "show", str(copy), "--json")).output)
    assert shown["name"] == "May (copy)" and shown["subject"] == "Hi {{ subscriber.name }}"
    assert shown["state"] == "draft"
    ok(
        run(
            "campaigns",
            "edit",
            str(copy),
            "--subject",
            "Hello {{ subscriber.attributes.city | default('') }}",
            "--reply-to",
            "Desk <desk@example.com>",
        )
    )
    shown = json.loads(run("campaigns", "show", str(copy), "--json").output)
    assert shown["subject"].startswith("Hello") and shown["reply_to"] == "Desk <desk@example.com>"
    # The edited template is checked against the members, as create checks it.
    error(
        run("campaigns", "edit", str(copy), "--subject", "{{ subscriber.attributes.city }}"), "city"
    )
    error(run("campaigns", "edit", str(copy)), "nothing to change")
    ok(run("lists", "create", "other"))
    ok(run("campaigns", "edit", str(copy), "--list", "other"))
    other = json.loads(ok(run("lists", "show", "other", "--json")).stdout)
    assert [c["id"] for c in other["campaigns"]] == [copy]
    error(run("campaigns", "edit", str(copy), "--list", "ghost"), "no list named 'ghost'")
    error(run("campaigns", "edit", str(copy), "--from", "nobody"), "--from")
    # Once enqueued (being sent), neither edit nor delete.
    db = Database(db_url)
    with db.session() as s:
        s.execute(
            text("UPDATE campaigns SET state = 'running', enqueued = :t WHERE id = :id"),
            {"t": True, "id": cid},
        )
    enqueue(db, cid, 1, now())
    db.dispose()
    error(run("campaigns", "edit", str(cid), "--name", "Z"), "can no longer be edited")
    error(run("campaigns", "delete", str(cid), "--yes"), "can no longer be deleted")
    error(run("campaigns", "delete", str(copy)), "pass --yes")
    ok(run("campaigns", "delete", str(copy), "--yes"))
    error(run("campaigns", "show", str(copy)), f"no campaign with id {copy}")


def test_suppressions_remove_lifts_a_forgotten_address_too(run) -> None:  # type: ignore[no-untyped-def]
    ok(run("subscribers", "remove", "bob@example.org", "--forget", "--yes"))
    listed = ok(run("suppressions", "list", "--json")).stdout
    assert "sha256:" in listed and "bob" not in listed
    ok(run("suppressions", "remove", "BOB@example.org"))
    assert "sha256:" not in ok(run("suppressions", "list", "--json")).stdout


def terminal_run(config: Path, answer: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run bulkmail with a real pseudo-terminal as stdin (as a person at a shell has)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulkmail", "--config", str(config), *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.write(master, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_real_terminal_is_asked_and_its_answer_obeyed(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "bulkmail.toml"
    declined = terminal_run(config, b"n\n", "lists", "delete", "news")
    assert declined.returncode != 0 and b"Delete list 'news'" in declined.stderr
    assert b"pass --yes" not in declined.stderr  # asked, not refused for want of a terminal
    assert "news" in ok(run("lists", "list")).output
    accepted = terminal_run(config, b"y\n", "lists", "delete", "news")
    assert accepted.returncode == 0, accepted.stderr
    assert "news" not in ok(run("lists", "list")).output
