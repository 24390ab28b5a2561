"""Pure pieces of what the CLI prints: the progress line and a reply's example text."""

from __future__ import annotations

import pytest

from bulkmail.cli.progress import ProgressView, outcome_counts
from bulkmail.reports.model import ReplySummary, pick_reply


def test_progress_line_shows_expired_and_failed(capsys: pytest.CaptureFixture[str]) -> None:
    view = ProgressView(7, enabled=True, interval=0.0)
    view({"sent": 5, "deferred": 1, "bounced": 2, "expired": 3, "failed": 1, "queued": 4})
    line = capsys.readouterr().err.strip()
    assert line.startswith("campaign 7: 11/16 done, ")
    assert "sent 5, deferred 1, bounced 2, expired 3, failed 1" in line


def test_outcome_counts_hide_only_zero_rare_outcomes() -> None:
    assert outcome_counts({}) == "sent 0, deferred 0, bounced 0"
    assert outcome_counts({"skipped": 2, "sent": 1}) == "sent 1, deferred 0, bounced 0, skipped 2"


@pytest.mark.parametrize(
    "text",
    ["550 5.1.1 No such user", "550-5.1.1 No such user", "5.1.1 No such user", "No such user"],
)
def test_bounce_example_prints_each_code_once(text: str) -> None:
    assert str(ReplySummary(550, "5.1.1", text, 1)) == "550 5.1.1 No such user"
    reply = pick_reply([(550, "5.1.1", f"  {text}", 2)])
    assert str(reply) == "550 5.1.1 No such user"


def test_example_text_that_only_looks_like_a_code_is_kept() -> None:
    assert str(ReplySummary(550, "5.1.1", "5501 mailbox full", 1)) == "550 5.1.1 5501 mailbox full"
    assert str(ReplySummary(None, "5.1.1", "5.1.10 unknown", 1)) == "5.1.1 5.1.10 unknown"
    assert str(ReplySummary(421, None, "421 try later", 1)) == "421 try later"
