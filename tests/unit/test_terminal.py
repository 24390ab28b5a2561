"""printable(): what a stranger wrote, shown on a terminal without being obeyed."""

from __future__ import annotations

import io

import pytest

from bulkmail.reports.terminal import PrintableWriter, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("550 \x1b]2;owned\x07\x1b[2J", "550 \\x1b]2;owned\\x07\\x1b[2J"),  # OSC title, clear
        ("a\x9b31mb", "a\\x9b31mb"),  # C1 CSI
        ("\x00\x08\x7f", "\\x00\\x08\\x7f"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # bidi override reorders the line
        ("line\nforged line\r", "line\\x0aforged line\\x0d"),  # one line stays one line
        ("tab\there ünïcode 名前", "tab\there ünïcode 名前"),  # printable text untouched
    ],
)
def test_control_characters_are_shown_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_text_keeps_its_lines_but_not_a_lone_carriage_return() -> None:
    assert printable("a\r\nb\nc\rd", newlines=True) == "a\r\nb\nc\\x0dd"


def test_the_writer_escapes_each_write_and_reports_the_length_written() -> None:
    out = io.StringIO()
    writer = PrintableWriter(out)
    assert writer.write('1,"550 \x1b[2J"\n') == 13
    writer.writelines(["2,\x07\n"])
    assert out.getvalue() == '1,"550 \\x1b[2J"\n2,\\x07\n'
