"""Every command's --help: examples print as written, so an operator can copy them.

click joins and re-wraps a paragraph unless a line holding only ``\\b`` (the backspace
character) opens it; a docstring spelling ``\\\\b`` prints a literal ``\\b`` and still re-wraps.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import click
from click.testing import CliRunner

from bulkmail.cli.main import cli

CRONTAB_LINE = "*/5 * * * *  bulkmail --config /etc/bulkmail.toml run-due --max-runtime 4m"


def _commands(cmd: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, [*path, name])


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, path
    return result.output


def test_run_due_help_prints_the_crontab_line_intact() -> None:
    out = _help(["run-due"])
    assert "\\b" not in out
    assert any(line.strip() == CRONTAB_LINE for line in out.splitlines())


def test_worker_help_prints_its_example_intact() -> None:
    out = _help(["worker"])
    assert "\\b" not in out
    assert any(
        line.strip() == "bulkmail --config /etc/bulkmail.toml worker" for line in out.splitlines()
    )


def test_no_help_prints_a_literal_backslash_b_or_rewraps_an_example() -> None:
    """Indented docstring lines (examples) must come out as lines of their own, unwrapped."""
    for path, cmd in _commands(cli, []):
        out = _help(path)
        assert "\\b" not in out, f"bulkmail {' '.join(path)} --help prints a literal \\b"
        printed = {line.strip() for line in out.splitlines()}
        for line in inspect.cleandoc(cmd.help or "").splitlines():
            if line.startswith(" "):
                assert line.strip() in printed, (
                    f"bulkmail {' '.join(path)} --help re-wraps {line!r}"
                )
