"""The database a command uses: the one the config names, created only by ``init``, owner-only,
and described without its password. Unusable URLs and failing migrations are one line."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from bulkmail.db.engine import Database, upgrade

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)
    monkeypatch.delenv("BULKMAIL_CONFIG", raising=False)
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    old = os.umask(0o022)  # the usual umask, under which files would be 0644
    yield
    os.umask(old)


def bulkmail(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def config(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bulkmail.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


# -- which file -----------------------------------------------------------------------------


def test_relative_sqlite_path_is_relative_to_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path / "etc", "sqlite:///bulkmail.db")
    (tmp_path / "cron").mkdir()
    monkeypatch.chdir(tmp_path / "cron")  # cron and systemd start elsewhere
    assert bulkmail("--config", str(cfg), "init").exit_code == 0
    assert (tmp_path / "etc" / "bulkmail.db").is_file()
    assert not (tmp_path / "cron" / "bulkmail.db").exists()
    assert bulkmail("--config", str(cfg), "lists", "create", "news").exit_code == 0
    monkeypatch.chdir(tmp_path / "etc")
    assert "news" in bulkmail("--config", "bulkmail.toml", "lists", "list").output


def test_relative_path_in_the_environment_is_relative_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path / "etc", "sqlite:///from-file.db")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv("BULKMAIL_DATABASE_URL", "sqlite:///env.db")
    result = bulkmail("--config", str(cfg), "init")
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "here" / "env.db") in result.output
    assert (tmp_path / "here" / "env.db").is_file()
    assert not (tmp_path / "etc" / "from-file.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["lists", "list"],
        ["lists", "create", "news"],
        ["campaigns", "list"],
        ["suppressions", "list"],
        ["campaigns", "send", "1"],
    ],
)
def test_only_init_creates_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path / "etc", "sqlite:///news.db")
    missing = tmp_path / "etc" / "news.db"
    one_line_error(bulkmail("--config", str(cfg), *command), str(missing), "bulkmail init")
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["bulkmail.toml"]
    assert not (tmp_path / "news.db").exists()


# -- file modes -----------------------------------------------------------------------------


def test_init_creates_the_database_and_its_wal_files_owner_only(tmp_path: Path) -> None:
    cfg = config(tmp_path, "sqlite:///bulkmail.db")
    assert bulkmail("--config", str(cfg), "init").exit_code == 0
    path = tmp_path / "bulkmail.db"
    assert path.stat().st_mode & 0o777 == 0o600
    db = Database(f"sqlite:///{path}")
    with db.session() as s:  # a write, with the connection held open: -wal and -shm exist
        s.connection().exec_driver_sql("INSERT INTO lists (name, created_at) VALUES ('x', 0)")
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM lists").scalar()
        for suffix in ("-wal", "-shm"):
            assert Path(f"{path}{suffix}").stat().st_mode & 0o777 == 0o600, suffix
    db.dispose()


# -- URLs that cannot work, migrations that fail ---------------------------------------------


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("mysql://news:pw-in-url@db.example/news", "not supported"),
        ("oracle://news:pw-in-url@db.example/news", "not supported"),
        ("nosuchdb://news:pw-in-url@db.example/news", "not supported"),
        ("postgresql+psycopg://news:pw-in-url@127.0.0.1:5x/news", "not usable"),
    ],
)
def test_unusable_database_url_is_one_line_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, url)
    err = one_line_error(bulkmail("--config", str(cfg), "init"), fragment)
    assert "pw-in-url" not in err
    verbose = bulkmail("-v", "--config", str(cfg), "init")  # -v adds the traceback
    assert verbose.exit_code != 0 and fragment in verbose.stderr
    assert "pw-in-url" not in verbose.output + verbose.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bulkmail.toml"]


def test_unreachable_database_error_hides_the_password_with_and_without_v(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, "postgresql+psycopg://news:pw-in-url@127.0.0.1:1/news")
    for verbose in ([], ["-v"], ["-vv"]):
        result = CliRunner().invoke(cli, [*verbose, "--config", str(cfg), "lists", "list"])
        assert result.exit_code != 0
        assert "unreachable" in result.stderr
        logged = capfd.readouterr()
        assert "pw-in-url" not in result.output + result.stderr + logged.out + logged.err


def _broken_migrations(tmp_path: Path) -> Path:
    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy(ROOT / "migrations" / name, scripts / name)
    (scripts / "versions" / "0001_broken.py").write_text(
        'revision = "0001"\ndown_revision = None\nfrom alembic import op\n\n'
        'def upgrade():\n    op.execute("CREATE TABLE ok (id INTEGER)")\n'
        '    op.execute("THIS IS NOT SQL")\n',
        encoding="utf-8",
    )
    return scripts


def test_failing_migration_is_one_line_and_leaves_no_database_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = _broken_migrations(tmp_path / "scripts")
    monkeypatch.setattr("bulkmail.resources.migrations_dir", lambda: scripts)
    cfg = config(tmp_path / "etc", "sqlite:///bulkmail.db")
    one_line_error(bulkmail("--config", str(cfg), "init"), "upgrade from revision none", "syntax")
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["bulkmail.toml"]


def test_database_newer_than_this_installation_is_one_line_and_kept(tmp_path: Path) -> None:
    cfg = config(tmp_path, "sqlite:///bulkmail.db")
    assert bulkmail("--config", str(cfg), "init").exit_code == 0
    with sqlite3.connect(tmp_path / "bulkmail.db") as conn:  # as a later version leaves it
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    one_line_error(bulkmail("--config", str(cfg), "init"), "from revision 9999", "newer bulkmail")
    assert (tmp_path / "bulkmail.db").stat().st_size > 0


def test_upgrade_of_an_existing_empty_file_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "made-by-hand.db"
    path.touch(mode=0o640)
    db = Database(f"sqlite:///{path}")
    assert upgrade(db)
    db.dispose()
    assert path.stat().st_mode & 0o777 == 0o640  # the operator's choice is left alone


def test_plain_postgresql_url_uses_the_shipped_psycopg_driver() -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none")  # psycopg2 is not installed
    assert db.engine.dialect.driver == "psycopg"
    db.dispose()


def test_init_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "sqlite:///no/such/folder/bulkmail.db")
    one_line_error(bulkmail("--config", str(cfg), "init"), str(tmp_path / "no/such/folder"))
    assert not (tmp_path / "no").exists()


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    cfg = config(tmp_path / "etc", "sqlite:///~/news.db")
    assert bulkmail("--config", str(cfg), "init").exit_code == 0
    assert (tmp_path / "home" / "news.db").is_file()
    assert bulkmail("--config", str(cfg), "lists", "list").exit_code == 0
