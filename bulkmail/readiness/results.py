"""What a readiness check found: one ``CheckResult`` per check and subject, as a value.

Every check function returns results rather than raising, so one broken lookup never hides
the others: a DNS timeout is an ``inconclusive`` result, not a crash. The command's exit code
and the JSON output are computed here from the results alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PASS = "pass"
WARN = "warn"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
STATUSES = (PASS, WARN, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class CheckResult:
    """One finding. ``kind`` names the check ("ptr", "spf", "dkim", …) and ``subject`` what it
    looked at ("192.0.2.1"); ``detail`` is the one-line finding; ``remedy`` the exact DNS
    record or setting to publish (empty when there is nothing to do)."""

    kind: str
    subject: str
    status: str
    detail: str
    remedy: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @property
    def check(self) -> str:
        """The check's name as shown: kind and subject."""
        return f"{self.kind} {self.subject}" if self.subject else self.kind

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "remedy": self.remedy,
        }


def passed(kind: str, subject: str, detail: str) -> CheckResult:
    return CheckResult(kind, subject, PASS, detail)


def warned(kind: str, subject: str, detail: str, remedy: str = "") -> CheckResult:
    return CheckResult(kind, subject, WARN, detail, remedy)


def failed(kind: str, subject: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(kind, subject, FAIL, detail, remedy)


def inconclusive(kind: str, subject: str, detail: str, remedy: str = "") -> CheckResult:
    return CheckResult(kind, subject, INCONCLUSIVE, detail, remedy)


def worst(statuses: Iterable[str]) -> str:
    """The status that matters most: fail, then inconclusive, then warn, else pass."""
    seen = set(statuses)
    for status in (FAIL, INCONCLUSIVE, WARN):
        if status in seen:
            return status
    return PASS


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when nothing failed (warnings and inconclusive results included), 1 otherwise."""
    return 1 if any(r.status == FAIL for r in results) else 0
