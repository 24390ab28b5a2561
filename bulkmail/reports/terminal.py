"""Text from strangers, made safe to print on a terminal.

A remote server's reply (``550 \\x1b]2;owned\\x07\\x1b[2J``), a bounce reason or an imported
name reaches ``campaigns report``, ``events export``, ``campaigns show`` and ``suppressions
list``. Printed raw, its escape sequences retitle the window, clear the screen, hide text or
(on some terminals) write files. :func:`printable` shows every control character as a
visible escape (``\\x1b``), so the output says what the stranger sent without obeying it;
bidirectional overrides (U+202A-202E, U+2066-2069) too, since they reorder what is shown.
JSON output is left exact: JSON escapes control characters itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TextIO

_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE_LINE = re.compile(f"[{_CONTROLS}\n\r]")  # one line: newlines escaped too
_UNSAFE_TEXT = re.compile(f"[{_CONTROLS}]|\r(?!\n)")  # text: \n and \r\n kept, lone \r not


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, newlines: bool = False) -> str:
    """``str(value)`` with control characters shown as ``\\xNN`` (tabs kept; newlines kept
    only if ``newlines``, so a value cannot forge a line of its own)."""
    pattern = _UNSAFE_TEXT if newlines else _UNSAFE_LINE
    return pattern.sub(_escape, str(value))


class PrintableWriter:
    """A text stream that writes :func:`printable` text (newlines kept) to ``out``: for CSV
    going to a terminal, whose fields may hold what a remote server wrote."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(printable(text, newlines=True))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.out.flush()
