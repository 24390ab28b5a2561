"""The CLI's conduct: every error a user can cause is one line on stderr, a non-zero exit
code, no traceback and nothing written. Run through click's runner on real databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, text

from bulkmail.cli.main import cli
from bulkmail.db.engine import Database
from bulkmail.db.models import Campaign


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``run(*args)`` invokes bulkmail with a config pointing at the test database."""
    config = tmp_path / "bulkmail.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)

    def invoke(*args: str, config_path: Path | None = config) -> Result:
        argv = (["--config", str(config_path)] if config_path else []) + list(args)
        return CliRunner().invoke(cli, argv, catch_exceptions=False)

    return invoke


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("bulkmail: error: ") or err.startswith("Error: ")
    for fragment in fragments:
        assert fragment in err


def people(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name,city\nann@example.com,Ann,Oslo\nbob@example.org,Bob,\nbroken-address,X,\n",
        encoding="utf-8",
    )
    return path


def test_a_full_session_of_commands(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    assert run("init").exit_code == 0
    assert "created" in run("lists", "create", "news").output
    imported = run("subscribers", "import", "--list", "news", str(people(tmp_path)), "--json")
    assert json.loads(imported.output) == {
        "imported": 2,
        "updated": 0,
        "rejected_count": 1,
        "rejected": [
            {
                "line": 4,
                "email": "broken-address",
                "reason": "An email address must have an @-sign.",
            }
        ],
    }
    created = run(
        "campaigns",
        "create",
        "--name",
        "May",
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
    assert created.exit_code == 0, created.output
    cid = json.loads(created.output)["id"]
    status = json.loads(run("campaigns", "status", str(cid), "--json").output)
    health = status.pop("list_health")  # rates against the brakes: tests/integration/test_brakes
    assert (health["complaint_rate"], health["bounce_rate"], health["bounce_level"]) == (0, 0, "ok")
    assert status == {
        "id": cid,
        "name": "May",
        "state": "draft",
        "total": 0,
        "queued": 0,
        "sending": 0,
        "deferred": 0,
        "sent": 0,
        "bounced": 0,
        "expired": 0,
        "failed": 0,
        "skipped": 0,
        "complained": 0,
        "cancelled": 0,
        "reason": "",  # nothing paused, missed or cancelled it
    }
    assert "May" in run("campaigns", "list").output
    preview = run("campaigns", "preview", str(cid), "--to", "ann@example.com")
    assert preview.exit_code == 0
    assert "Subject: Hi Ann" in preview.output
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in preview.output


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    groups = [cli, *[c for c in cli.commands.values() if hasattr(c, "commands")]]
    for group in groups:
        names = (
            group.commands
            if group is not cli
            else {k: v for k, v in cli.commands.items() if not hasattr(v, "commands")}
        )
        for name in names:
            path = [name] if group is cli else [group.name, name]
            out = runner.invoke(cli, [*path, "--help"])
            assert out.exit_code == 0, path
            assert "Example" in out.output, f"bulkmail {' '.join(path)} --help has no example"


def test_missing_csv_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("lists", "create", "news")
    one_line_error(
        run("subscribers", "import", "--list", "news", str(tmp_path / "nope.csv")),
        "nope.csv",
        "cannot read",
    )


def test_unknown_list(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one_line_error(
        run("subscribers", "import", "--list", "ghost", str(people(tmp_path))),
        "no list named 'ghost'",
    )


def test_unknown_campaign(run) -> None:  # type: ignore[no-untyped-def]
    for command in ("status", "show", "send"):
        one_line_error(run("campaigns", command, "42"), "no campaign with id 42")


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"body.html": "<p>{{ subscriber.nmae.upper() }}</p>"}, "nmae"),
        ({"body.txt": "Hello {% if %}"}, "body.txt"),
        ({}, "body.html"),
    ],
)
def test_broken_template_fails_at_creation_and_writes_nothing(
    run, tmp_path: Path, db_url: str, files: dict[str, str], fragment: str
) -> None:  # type: ignore[no-untyped-def]
    run("lists", "create", "news")
    run("subscribers", "import", "--list", "news", str(people(tmp_path)))
    template = tmp_path / "tpl"
    template.mkdir()
    for name, body in files.items():
        (template / name).write_text(body, encoding="utf-8")
    result = run(
        "campaigns",
        "create",
        "--name",
        "x",
        "--list",
        "news",
        "--subject",
        "s",
        "--from",
        "A <a@example.com>",
        "--template",
        str(template),
    )
    one_line_error(result, fragment)
    db = Database(db_url)
    with db.session() as s:
        assert s.scalars(select(Campaign)).all() == []
    db.dispose()


def test_bad_from_address(run) -> None:  # type: ignore[no-untyped-def]
    run("lists", "create", "news")
    one_line_error(
        run(
            "campaigns",
            "create",
            "--name",
            "x",
            "--list",
            "news",
            "--subject",
            "s",
            "--from",
            "nobody",
            "--template",
            "newsletter",
        ),
        "--from",
    )


def test_bad_config_exits_2(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text("[sender]\nhelo = 1\n", encoding="utf-8")
    result = run("lists", "list", config_path=bad)
    one_line_error(result, str(bad), "sender.helo")
    assert result.exit_code == 2


def test_database_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bulkmail.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://nobody@127.0.0.1:1/none"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "lists", "list"])
    one_line_error(result, "unreachable")


def test_database_not_initialised(tmp_path: Path) -> None:
    config = tmp_path / "bulkmail.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "empty.db"}"\n')
    (tmp_path / "empty.db").touch()  # a file, but no schema (a missing file: test_database_files)
    result = CliRunner().invoke(cli, ["--config", str(config), "lists", "list"])
    one_line_error(result, "not initialised", "bulkmail init")


def test_console_script_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bulkmail", "--config", str(tmp_path / "x.toml"), "lists", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bulkmail: error: {tmp_path / 'x.toml'}: config file not found"
    ]


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulkmail",
            "-v",
            "--config",
            str(tmp_path / "x.toml"),
            "lists",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" in proc.stderr


def test_init_is_idempotent(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    assert run("init").exit_code == 0
    assert run("init").exit_code == 0
    from alembic.script import ScriptDirectory

    from bulkmail.resources import migrations_dir

    heads = ScriptDirectory(str(migrations_dir())).get_heads()
    assert len(heads) == 1, heads  # one chain of migrations: "head" is one revision
    db = Database(db_url)
    with db.session() as s:
        assert s.scalar(text("SELECT version_num FROM alembic_version")) == heads[0]
    db.dispose()


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path)])
    one_line_error(result, "not a bulkmail demo folder")
    assert (tmp_path / "precious.txt").read_text() == "keep me"
