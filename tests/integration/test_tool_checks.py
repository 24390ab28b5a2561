"""A test peer missing from the machine fails the suite under CI instead of skipping.

Each case runs one real test in a child pytest whose PATH holds only Python, so Chromium, perl
and node are "not installed": with ``CI=true`` it must fail and say what to install, without
``CI`` it skips (a laptop without Chromium can still run the rest).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = {  # tool: (test file, one test that needs it)
    "chromium": ("test_report_browser.py", "test_the_checker_sees_console_errors_and_fetches"),
    "mail-dkim": ("test_dkim_verify.py", "test_mail_dkim_fails_an_altered_message"),
    "mail-dkim-send": ("test_send.py", "test_delivered_messages_verify_with_mail_dkim"),
    "mailauth": ("test_dkim_verify.py", "test_mailauth_passes_both_signatures_of_sign_all"),
    "spamassassin": ("test_spamassassin.py", "test_demo_mail_scores_zero_without_low_contrast"),
}


def run_without_tools(node: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(Path(sys.executable).parent)  # python only: no chromium, no perl
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", node],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("tool", list(CASES))
def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(tool: str) -> None:
    node = "tests/integration/{}::{}".format(*CASES[tool])
    failed = run_without_tools(node, "true")
    assert failed.returncode == 1, failed.stdout[-2000:]
    assert "CI must have it" in failed.stdout
    assert "install-test-peers.sh" in failed.stdout

    skipped = run_without_tools(node, None)
    assert skipped.returncode == 0, skipped.stdout[-2000:]
    assert "skipped" in skipped.stdout and "install-test-peers.sh" in skipped.stdout
