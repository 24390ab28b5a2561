"""``campaigns create --template tpl`` with ``./tpl/`` here: used, and found again elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkmail.cli.main import cli


def test_a_local_template_is_used_and_found_again_from_another_folder(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKMAIL_SECRET", "test-secret-0123456789")
    monkeypatch.setenv("BULKMAIL_DATABASE_URL", db_url)
    config = tmp_path / "bulkmail.toml"
    config.write_text('[sender]\nhelo = "mail.example.com"\n', encoding="utf-8")
    work, cron = tmp_path / "work", tmp_path / "cron"
    (work / "newsletter").mkdir(parents=True)  # shadows the bundled template of that name
    (work / "newsletter" / "body.txt").write_text("MY OWN BODY for {{ subscriber.email }}\n")
    cron.mkdir()
    (work / "people.csv").write_text("email\nann@example.com\n", encoding="utf-8")

    def bulkmail(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    monkeypatch.chdir(work)
    bulkmail("lists", "create", "news")
    bulkmail("subscribers", "import", "--list", "news", "people.csv")
    bulkmail("campaigns", "create", "--name", "May", "--list", "news", "--subject", "Hi",
             "--from", "News <news@example.com>", "--template", "newsletter")  # fmt: skip
    monkeypatch.chdir(cron)
    preview = bulkmail("campaigns", "preview", "1", "--to", "ann@example.com")
    assert "MY OWN BODY for ann@example.com" in preview
