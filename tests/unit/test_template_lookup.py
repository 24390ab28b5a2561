"""Where ``--template NAME`` is looked for: an existing folder first, then a bundled name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmail.compose.render import (
    bundled_templates_dir,
    resolve_template_dir,
    template_reference,
)
from bulkmail.errors import TemplateError


def folder(path: Path, body: str = "local body") -> Path:
    path.mkdir(parents=True)
    (path / "body.txt").write_text(body, encoding="utf-8")
    return path


def test_a_bare_name_finds_a_folder_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tpl = folder(tmp_path / "tpl")
    monkeypatch.chdir(tmp_path)
    assert resolve_template_dir("tpl") == tpl


def test_an_existing_folder_wins_over_a_bundled_template_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = folder(tmp_path / "newsletter")
    monkeypatch.chdir(tmp_path)
    assert resolve_template_dir("newsletter") == mine
    assert template_reference("newsletter") == str(mine)


def test_a_bundled_name_is_found_in_the_package_and_stored_as_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_template_dir("newsletter") == bundled_templates_dir() / "newsletter"
    assert (bundled_templates_dir() / "newsletter" / "body.html").is_file()
    assert template_reference("newsletter") == "newsletter"


def test_a_relative_path_is_stored_absolute_for_a_send_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tpl = folder(tmp_path / "mail" / "tpl")
    monkeypatch.chdir(tmp_path)
    assert template_reference("./mail/tpl") == str(tpl)
    assert template_reference("mail/tpl") == str(tpl)


def test_not_found_names_every_place_looked_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateError) as raised:
        resolve_template_dir("tpl")
    message = str(raised.value)
    assert str(tmp_path / "tpl") in message
    assert str(bundled_templates_dir() / "tpl") in message
    assert "\n" not in message


def test_a_folder_without_a_body_says_so_instead_of_using_a_bundled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "newsletter").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateError, match="has no body.html or body.txt"):
        resolve_template_dir("newsletter")


def test_an_empty_name_is_an_error() -> None:
    with pytest.raises(TemplateError, match="empty"):
        resolve_template_dir(" ")
