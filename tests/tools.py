"""Tools the suite needs from the machine (Perl Mail::DKIM, Chromium, ...).

On a laptop without one, the tests that use it skip with the package to install. In CI
(``CI`` set to true, as every CI service and .ci/run do) a missing tool fails them instead,
so a broken install step cannot turn the run green by skipping what it claims to test;
Dovecot and PostgreSQL fail everywhere already.
"""

from __future__ import annotations

import os

import pytest

INSTALL = "scripts/install-test-peers.sh"


def in_ci() -> bool:
    """True under CI: ``CI`` is set to anything but empty, 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str) -> None:
    """Skip the calling test (fail it in CI) unless ``available``; ``what`` names the tool and
    its Debian package."""
    if available:
        return
    message = f"{what} is not installed (run {INSTALL})"
    if in_ci():
        pytest.fail(f"{message}; CI must have it", pytrace=False)
    pytest.skip(message)
