"""Options and output helpers shared by several commands (defined once, STYLE.md)."""

from __future__ import annotations

import json
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
workers_option = click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes to send with (use every core).",
)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=False))
