"""Templates as a user writes them, through the CLI on both databases: checked against the
list's real members at ``campaigns create``, errors that name the variable and the line, and
hostile templates refused without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select, text

from bulkmail import template_check
from bulkmail.cli.main import cli
from bulkmail.db.engine import Database
from bulkmail.db.models import Campaign
from bulkmail.template_check import attribute_key_sets
from tests.integration.test_cli import one_line_error


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``run(*args)`` invokes bulkmail with a config pointing at the test database."""
    config = tmp_path / "bulkmail.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    return invoke


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def template(tmp_path: Path, **files: str) -> str:
    folder = tmp_path / "tpl"
    folder.mkdir(exist_ok=True)
    for name, source in files.items():
        write(folder / name.replace("_", "."), source)
    return str(folder)


def members(run, tmp_path: Path, csv: str, list_name: str = "news") -> None:  # type: ignore[no-untyped-def]
    run("lists", "create", list_name)
    path = write(tmp_path / f"{list_name}-{len(csv)}.csv", csv)
    result = run("subscribers", "import", "--list", list_name, str(path))
    assert result.exit_code == 0, result.output


def create(run, folder: str, subject: str = "Hello", list_name: str = "news") -> Result:  # type: ignore[no-untyped-def]
    return run(
        "campaigns", "create", "--name", "c", "--list", list_name, "--subject", subject,
        "--from", "News <news@example.com>", "--template", folder, "--json",
    )  # fmt: skip


def campaigns_stored(db_url: str) -> int:
    db = Database(db_url)
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(Campaign)) or 0
    db.dispose()
    return n


CITY_BODY = (
    "<p>Hello {{ subscriber.name }},</p>\n<p>See you in {{ subscriber.attributes.city }}.</p>"
)


def test_an_attribute_every_member_has_is_accepted(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email,name,city\nann@example.com,Ann,Oslo\nbob@example.org,Bob,Rome\n")
    folder = template(tmp_path, body_html=CITY_BODY)
    result = create(run, folder, subject="News from {{ subscriber.city }}")
    assert result.exit_code == 0, result.output
    cid = json.loads(result.output)["id"]
    preview = run("campaigns", "preview", str(cid), "--to", "bob@example.org")
    assert "Subject: News from Rome" in preview.output


def test_members_without_it_are_counted_the_first_named_and_the_fix_given(
    run, tmp_path: Path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    members(
        run,
        tmp_path,
        "email,name,city\nann@example.com,Ann,Oslo\nbob@example.org,Bob,\n"
        "cy@example.net,Cy,\ndee@example.com,Dee,Rome\n",
    )
    folder = template(tmp_path, body_html=CITY_BODY)
    result = create(run, folder)
    one_line_error(result)
    assert result.stderr.strip() == (
        f"bulkmail: error: template {folder}/body.html line 2: 'subscriber.attributes' has no "
        "attribute 'city' (2 of 4 members of list 'news' fail, first bob@example.org); give the "
        "members without it a fallback: {{ subscriber.attributes.city | default('') }}"
    )
    assert campaigns_stored(db_url) == 0
    fixed = CITY_BODY.replace("city }}", "city | default('your town') }}")
    assert create(run, template(tmp_path, body_html=fixed)).exit_code == 0


def test_a_typo_names_the_variable_and_the_line_not_a_python_class(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email,name\nann@example.com,Ann\nbob@example.org,Bob\n")
    folder = template(tmp_path, body_txt="Hello\n\n{{ subscriber.nme }}\n")
    result = create(run, folder)
    one_line_error(result)
    assert result.stderr.strip() == (
        f"bulkmail: error: template {folder}/body.txt line 3: 'subscriber' has no attribute "
        "'nme' (all 2 members of list 'news')"
    )
    assert "SubscriberView" not in result.stderr


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("Hi {{ nmae }}", "template campaign subject line 1: 'nmae' is undefined"),
        ("{{ campaign.nme }}", "template campaign subject line 1: 'campaign' has no attribute"),
    ],
)
def test_a_typo_in_the_subject_names_the_subject(
    run, tmp_path: Path, subject: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email\nann@example.com\n")
    result = create(run, template(tmp_path, body_txt="x"), subject=subject)
    one_line_error(result, message)


def test_an_empty_list_is_checked_against_a_sample_subscriber(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("lists", "create", "news")
    one_line_error(
        create(run, template(tmp_path, body_txt="{{ subscriber.nme }}")),
        "body.txt line 1: 'subscriber' has no attribute 'nme'",
    )
    assert create(run, template(tmp_path, body_txt="{{ subscriber.email }}")).exit_code == 0


def test_unsubscribed_members_are_not_checked(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email,name,city\nann@example.com,Ann,Oslo\nbob@example.org,Bob,\n")
    db = Database(db_url)
    with db.session() as s:
        s.execute(
            text(
                "UPDATE memberships SET status = 'unsubscribed' WHERE subscriber_id = "
                "(SELECT id FROM subscribers WHERE email = 'bob@example.org')"
            )
        )
    db.dispose()
    assert create(run, template(tmp_path, body_html=CITY_BODY)).exit_code == 0


def test_suppressed_members_are_not_checked(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email,name,city\nann@example.com,Ann,Oslo\nbob@example.org,Bob,\n")
    assert run("suppressions", "add", "BOB@Example.org").exit_code == 0
    assert create(run, template(tmp_path, body_html=CITY_BODY)).exit_code == 0


def test_past_the_key_set_cap_the_count_is_a_lower_bound(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(template_check, "MAX_KEY_SETS", 2)
    rows = ["email,name,city,plan"]
    rows += [f"a{i}@example.com,A,Oslo,gold" for i in range(3)]
    rows += [f"b{i}@example.com,B,,gold" for i in range(2)]
    rows += ["c0@example.com,C,,"]
    members(run, tmp_path, "\n".join(rows) + "\n")
    one_line_error(
        create(run, template(tmp_path, body_html=CITY_BODY)),
        "(at least 2 of 6 members of list 'news' fail, first b0@example.com)",
    )


def test_key_sets_are_grouped_in_the_database(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    rows = ["email,name,city,plan"]
    rows += [f"a{i}@example.com,A,Oslo,gold" for i in range(5)]
    rows += [f"b{i}@example.com,B,,gold" for i in range(3)]
    rows += [f"c{i}@example.com,C,Rome," for i in range(2)]
    rows += ["d0@example.com,D,,"]
    members(run, tmp_path, "\n".join(rows) + "\n")
    members(run, tmp_path, "email,name\nother@example.com,O\n", list_name="other")
    db = Database(db_url)
    with db.session() as s:
        list_id = s.execute(text("SELECT id FROM lists WHERE name = 'news'")).scalar_one()
        first = dict(s.execute(text("SELECT email, id FROM subscribers")).all())
    groups = attribute_key_sets(db, list_id)
    db.dispose()
    assert [(g.keys, g.members, g.first_id) for g in groups] == [
        ({"city", "plan"}, 5, first["a0@example.com"]),
        ({"plan"}, 3, first["b0@example.com"]),
        ({"city"}, 2, first["c0@example.com"]),
        (set(), 1, first["d0@example.com"]),
    ]


ESCAPE = "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}"
READ_ENV = "{{ cycler.__init__.__globals__.os.environ['BULKMAIL_SECRET'] }}"


def test_a_subject_that_would_run_a_command_is_refused_and_runs_nothing(
    run, tmp_path: Path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email\nann@example.com\n")
    marker = tmp_path / "marker"
    result = create(
        run, template(tmp_path, body_txt="x"), subject=ESCAPE.replace("MARKER", str(marker))
    )
    one_line_error(result, "template campaign subject line 1: not allowed in a template")
    assert not marker.exists()
    assert campaigns_stored(db_url) == 0


def test_a_template_that_reads_the_environment_is_refused(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    members(run, tmp_path, "email\nann@example.com\n")
    result = create(run, template(tmp_path, body_html=f"<p>{READ_ENV}</p>"))
    one_line_error(result, "body.html line 1: not allowed in a template")
    assert "test-secret" not in result.output + result.stderr
    assert campaigns_stored(db_url) == 0
