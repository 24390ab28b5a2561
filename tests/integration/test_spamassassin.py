"""The bundled newsletter as a spam filter sees it: Debian's SpamAssassin rules, run locally
(``spamassassin -L -t``: no network tests, never ``sa-update``), on messages the demo sent.

Before: every demo message scored 0.7 for HTML_FONT_LOW_CONTRAST (a preheader coloured like its
background, a button whose background only a ``bgcolor`` attribute gave).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require

SPAMASSASSIN = shutil.which("spamassassin")


def _require_spamassassin() -> None:
    """Skip without SpamAssassin on a laptop; fail in CI (tests/tools.py)."""
    require(SPAMASSASSIN is not None, "spamassassin (Debian package spamassassin)")


@pytest.fixture(scope="module")
def demo_mail(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    _require_spamassassin()
    out = tmp_path_factory.mktemp("sa") / "demo-out"
    env = {k: v for k, v in os.environ.items() if k != "BULKMAIL_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "bulkmail", "demo", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return sorted((out / "mail").glob("*.eml"))


def spam_status(eml: Path, home: Path) -> tuple[float, list[str]]:
    """SpamAssassin's score and rule names for one message (local tests only)."""
    assert SPAMASSASSIN
    proc = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=eml.read_bytes(),
        capture_output=True,
        env={**os.environ, "HOME": str(home)},  # its user_prefs go to a scratch folder
        timeout=120,
    )
    status = email.message_from_bytes(proc.stdout)["X-Spam-Status"]
    assert status, proc.stderr.decode(errors="replace")
    flat = " ".join(str(status).split())
    match = re.search(r"score=(-?[\d.]+) .*tests=(\S*)", flat)
    assert match, flat
    return float(match.group(1)), [t for t in match.group(2).split(",") if t and t != "none"]


def test_demo_mail_scores_zero_without_low_contrast(demo_mail: list[Path], tmp_path: Path) -> None:
    _require_spamassassin()
    with_city = [p for p in demo_mail if b"reader meetup" in p.read_bytes()]
    without_city = [p for p in demo_mail if b"reader meetup" not in p.read_bytes()]
    assert with_city and without_city
    for eml in (with_city[0], without_city[0], demo_mail[-1]):
        score, tests = spam_status(eml, tmp_path)
        assert "HTML_FONT_LOW_CONTRAST" not in tests, (eml.name, tests)
        assert not [t for t in tests if t.startswith("FONT_INVIS")], (eml.name, tests)
        assert score <= 0.0, (eml.name, score, tests)
