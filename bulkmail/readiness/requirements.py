"""The mailbox providers' bulk-sender rules, each met or not, from the check results.

Gmail and Yahoo (since February 2024) and Outlook.com (since May 2025) reject or junk bulk
mail from senders that miss these rules (REFERENCE.md). Each rule is decided by the results
of some check kinds: met when all of them pass (warnings included), not met when one fails,
unknown when one was inconclusive or none ran. Pure: results in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bulkmail.readiness.results import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    WARN,
    CheckResult,
    worst,
)

GMAIL = "Gmail"
YAHOO = "Yahoo"
OUTLOOK = "Outlook.com"
PROVIDERS = (GMAIL, YAHOO, OUTLOOK)


@dataclass(frozen=True)
class Requirement:
    """One rule: its text, the check kinds that decide it, the providers that demand it."""

    text: str
    kinds: tuple[str, ...]
    providers: tuple[str, ...]


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("SPF passes for every sending IP", ("spf",), PROVIDERS),
    Requirement("DKIM signature verifies", ("dkim",), PROVIDERS),
    Requirement("DMARC record published (p=none is enough)", ("dmarc",), PROVIDERS),
    Requirement("From domain aligned with DKIM or SPF", ("alignment",), PROVIDERS),
    Requirement("Forward-confirmed reverse DNS for every IP", ("ptr",), (GMAIL, YAHOO)),
    Requirement("TLS for transmission", ("tls",), (GMAIL,)),
    Requirement("One-click unsubscribe (RFC 8058)", ("unsubscribe",), (GMAIL, YAHOO)),
)


@dataclass(frozen=True)
class Verdict:
    """A requirement (or a provider's whole set) and its status: pass, fail or inconclusive."""

    name: str
    status: str
    providers: tuple[str, ...] = ()
    #: The checks that decided a verdict that is not met or unknown, with their remedies
    #: (check name, remedy), so a provider's line can say what to do, not only what is wrong.
    causes: tuple[tuple[str, str], ...] = ()


def requirement_status(requirement: Requirement, results: Sequence[CheckResult]) -> str:
    """pass (met), fail (not met) or inconclusive (unknown) for one requirement."""
    statuses = [r.status for r in results if r.kind in requirement.kinds]
    if not statuses:
        return INCONCLUSIVE
    status = worst(statuses)
    return PASS if status == WARN else status


def summarise(results: Sequence[CheckResult]) -> list[Verdict]:
    """Each requirement's verdict, in ``REQUIREMENTS`` order."""
    verdicts = []
    for req in REQUIREMENTS:
        status = requirement_status(req, results)
        causes = tuple(
            (r.check, r.remedy)
            for r in results
            if r.kind in req.kinds and r.status == status and status != PASS
        )
        verdicts.append(Verdict(req.text, status, req.providers, causes))
    return verdicts


def _pointer(verdict: Verdict) -> str:
    """``name (to do: spf example.com 192.0.2.1)``: the requirement and where its fix is."""
    fixes = [check for check, remedy in verdict.causes if remedy]
    others = [check for check, remedy in verdict.causes if not remedy]
    where = [f"to do: {', '.join(fixes)}"] if fixes else []
    where += [f"see {', '.join(others)}"] if others else []
    if not verdict.causes:
        where = ["not checked"]
    return f"{verdict.name} ({'; '.join(where)})"


def provider_verdicts(verdicts: Sequence[Verdict]) -> list[CheckResult]:
    """One result per provider: all its requirements met, or which ones are not."""
    out = []
    for provider in PROVIDERS:
        own = [v for v in verdicts if provider in v.providers]
        missing = [v for v in own if v.status == FAIL]
        unknown = [v for v in own if v.status == INCONCLUSIVE]
        status = worst(v.status for v in own)
        if missing:
            detail = "not met: " + "; ".join(_pointer(v) for v in missing)
        elif unknown:
            detail = "unknown: " + "; ".join(_pointer(v) for v in unknown)
        else:
            detail = f"all {len(own)} requirements met"
        remedy = "; ".join(
            f"{check}: {fix}" for v in (missing or unknown) for check, fix in v.causes if fix
        )
        note = " (also keep the spam-complaint rate below 0.3%)"
        out.append(CheckResult("requirements", provider, status, detail + note, remedy))
    return out
