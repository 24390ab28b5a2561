"""Asking before something that cannot be undone, or that mails many people.

On a terminal the command asks; ``--yes`` answers for it. Without a terminal (cron, a pipe, a
script) nobody can answer, so a destructive command refuses unless ``--yes`` is given, while
a send goes on (cron runs it on purpose; see ``campaigns send``).
"""

from __future__ import annotations

import sys

import click

from bulkmail.errors import InputError

yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def on_terminal() -> bool:
    """True when a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal; refuse without one unless ``yes``."""
    if yes:
        return
    if not on_terminal():
        raise InputError(f"{question} Not on a terminal, so nobody can answer: pass --yes")
    click.confirm(question, abort=True, err=True)
