"""A non-https ``[unsubscribe] url`` is warned about when a command loads the config: one
line on stderr, and the command still runs (RFC 8058 §3.1: the one-click URI must be https)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from bulkmail.cli.notices import insecure_unsubscribe_url


def run_with(tmp_path: Path, url: str, *args: str) -> Result:
    config = tmp_path / "bulkmail.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "b.db"}"\n[unsubscribe]\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_a_plain_http_unsubscribe_url_is_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)
    result = run_with(tmp_path, "http://news.example.com/unsubscribe", "init")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bulkmail: warning: ")
    assert "unsubscribe.url" in lines[0] and "http://news.example.com/unsubscribe" in lines[0]
    assert "https" in lines[0] and "RFC 8058" in lines[0]
    assert "schema revision" in result.stdout


def test_https_and_the_demos_loopback_url_say_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)
    for url in ("https://news.example.com/unsubscribe", "http://127.0.0.1:8080/unsubscribe"):
        result = run_with(tmp_path, url, "init")
        assert result.exit_code == 0 and not result.stderr, (url, result.stderr)


@pytest.mark.parametrize(
    ("url", "insecure"),
    [
        ("http://news.example.com/u", True),
        ("HTTP://news.example.com/u", True),
        ("ftp://news.example.com/u", True),
        ("http://192.0.2.7/u", True),
        ("https://news.example.com/u", False),
        ("http://localhost:8080/unsubscribe", False),
        ("http://127.0.0.1:8080/u", False),
        ("http://[::1]:8080/u", False),
    ],
)
def test_which_urls_are_insecure(url: str, insecure: bool) -> None:
    assert insecure_unsubscribe_url(url) is insecure
