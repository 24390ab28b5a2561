"""The checks a CSV cell passes before the database sees it, and the delimiter choice (pure)."""

from __future__ import annotations

import pytest

from bulkmail.audience.csvfile import Rejections, cell_problem, pick_delimiter, shown


@pytest.mark.parametrize(
    ("value", "limit", "one_line", "problem"),
    [
        ("Ann", 300, True, None),
        ("A\x00nn", 300, True, "name: control character U+0000 at character 2"),
        ("Ann\x1b[2J", None, False, "name: control character U+001B at character 4"),
        ("Ann\x85", None, True, "name: control character U+0085 at character 4"),
        ("Ann\x7f", None, True, "name: control character U+007F at character 4"),
        ("two\nlines", None, True, "name: control character U+000A at character 4"),
        ("two\r\nlines\tand a tab", None, False, None),
        ("n" * 300, 300, True, None),
        ("n" * 301, 300, True, "name: 301 characters, longer than the 300 allowed"),
        ("é" * 300, 300, True, None),  # characters, as varchar(300) counts them
    ],
)
def test_cell_problem(value: str, limit: int | None, one_line: bool, problem: str | None) -> None:
    assert cell_problem("name", value, limit, one_line) == problem


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("email,name\n", ","),
        ("email;name\n", ";"),
        ("email\tname\n", "\t"),
        ("email|name\n", "|"),
        ('"name, full";email\n', ";"),
        ("mail;name\n", None),
    ],
)
def test_the_delimiter_is_the_one_that_makes_a_header_with_email(
    line: str, expected: str | None
) -> None:
    assert pick_delimiter(line, lambda cells: "email" in cells) == expected


def test_rejections_keep_a_few_count_all_and_pass_each_on() -> None:
    seen: list[int] = []
    rejections: Rejections[int] = Rejections(seen.append, keep=3)
    for i in range(10):
        rejections.add(i)
    assert (rejections.examples, rejections.count, seen) == ([0, 1, 2], 10, list(range(10)))
    assert len(shown("x" * 10_000)) == 203
