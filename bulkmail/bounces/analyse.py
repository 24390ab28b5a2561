"""What the classifier makes of a message on its own: no database, no configuration (pure).

``bulkmail bounces parse`` prints this, ``scripts/bounce_accuracy.py`` measures it against a
reference, and ``bulkmail.bounces.apply`` records the same per-recipient judgement, so what
a person sees when asking "why was this classified so?" is what bounce processing does.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace
from typing import Any

from bulkmail.bounces.parse import AUTOREPLY, BOUNCE, COMPLAINT, DELAYED, Recipient, Report
from bulkmail.bounces.parse import parse_report as parse_report
from bulkmail.delivery import taxonomy
from bulkmail.delivery.classify import Disposition, Reply, Verdict, classify_reply, reply_from_dsn
from bulkmail.delivery.taxonomy import BounceClass

#: The kinds ``bounces parse`` reports (an unsubscribe request is "unknown" here: not a bounce).
PARSE_KINDS = (BOUNCE, DELAYED, COMPLAINT, AUTOREPLY, "unknown")


@dataclass(frozen=True)
class Judgement:
    """One recipient of a report, judged: the class of the failure and whether to suppress."""

    address: str
    action: str
    status: str
    reply_code: int | None
    diagnostic: str
    category: str
    hard: bool  # the address itself is bad: bounced and suppressed
    bounced: bool  # the delivery is over (a permanent failure), whether or not suppressed

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action,
            "status": self.status,
            "reply_code": self.reply_code,
            "diagnostic": self.diagnostic,
            "category": self.category,
            "hard": self.hard,
        }


def judge(report: Report, rcpt: Recipient) -> Judgement:
    """The verdict on one recipient of a bounce or delay report (complaints: never "hard")."""
    reply = reply_from_dsn(rcpt.status, rcpt.diagnostic or None)
    code = reply.code or None
    if report.kind == COMPLAINT:
        return Judgement(
            rcpt.address, rcpt.action, "", None, rcpt.diagnostic, "complaint", False, False
        )
    action = rcpt.action or {"5": "failed", "4": "delayed", "2": "delivered"}.get(
        rcpt.status[:1], ""
    )
    if report.kind not in (BOUNCE, DELAYED) or action != "failed":
        category = "delayed" if action == "delayed" else (action or "uncategorised")
        if action == "delayed":
            category = (
                classify_reply(reply, report.refused_at_rcpt).bounce_class.value
                if code
                else "transient"
            )
        return Judgement(
            rcpt.address,
            action,
            reply.enhanced or rcpt.status,
            code,
            rcpt.diagnostic,
            category,
            False,
            False,
        )
    verdict = verdict_for(report, rcpt, reply)
    bounced = verdict.disposition is Disposition.BOUNCED
    return Judgement(
        rcpt.address,
        action,
        reply.enhanced or rcpt.status,
        code,
        rcpt.diagnostic,
        verdict.bounce_class.value,
        bounced and verdict.suppress,
        bounced,
    )


def verdict_for(report: Report, rcpt: Recipient, reply: Reply) -> Verdict:
    """The verdict on one failed recipient's reply, in the light of the whole report.

    Two things beyond the reply keep an address that may be good from being suppressed:

    - A report whose own words name a curable cause for its one failed recipient ("Not
      enough disk space", "The user(s) account is disabled") over a diagnostic that says the
      address is unknown: receivers (Japanese carriers, old Sendmail setups) answer "User
      unknown" for a full or disabled mailbox. The cause the words name wins, so the failure
      counts towards the soft-bounce escalation instead of suppressing at once.
    - A diagnostic of type ``x-unix``: a local delivery program on the receiving host
      (procmail, a pipe) failed, and its MTA turned the exit status into a code (EX_NOUSER
      becomes 5.1.1). A program's failure, not the receiver's address check: uncategorised.
    """
    verdict = classify_reply(reply, report.refused_at_rcpt)
    if not verdict.suppress:
        return verdict
    if report.text_cause and not taxonomy.curable_cause(reply.text):
        return dc_replace(verdict, suppress=False, bounce_class=BounceClass(report.text_cause))
    if rcpt.diagnostic.lower().startswith("x-unix;"):
        return dc_replace(verdict, suppress=False, bounce_class=BounceClass.UNCATEGORISED)
    return verdict


@dataclass(frozen=True)
class Analysis:
    """One message, as ``bounces parse`` shows it."""

    file: str
    kind: str
    recipients: tuple[Judgement, ...]
    notes: tuple[str, ...]
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "kind": self.kind,
            "recipients": [r.as_dict() for r in self.recipients],
            "notes": list(self.notes),
        }
        if self.error:
            out["error"] = self.error
        return out


def analyse(data: bytes, file: str = "") -> Analysis:
    """Parse and judge one raw message."""
    report = parse_report(data)
    kind = report.kind if report.kind in PARSE_KINDS else "unknown"
    judged = tuple(judge(report, r) for r in report.recipients)
    notes = report.notes
    if kind == AUTOREPLY:  # the one who replied: never a failure
        judged = (Judgement(report.sender, "", "", None, "", "autoreply", False, False),)
    elif kind == BOUNCE:
        notes += tuple(
            _why_judged(report, r, j)
            for r, j in zip(report.recipients, judged, strict=True)
            if j.bounced and _reread(r) != j.category
        )
    return Analysis(file, kind, judged, notes, report.error)


def _reread(rcpt: Recipient) -> str:
    """The class the reply alone gives (what SMTP time would say of the same words)."""
    return classify_reply(reply_from_dsn(rcpt.status, rcpt.diagnostic or None)).bounce_class.value


def _why_judged(report: Report, rcpt: Recipient, j: Judgement) -> str:
    """Why the whole report changed the class its reply alone gives (for a person asking)."""
    if report.text_cause and j.category == report.text_cause:
        why = f"the report's own words name {j.category.replace('_', ' ')}"
    elif rcpt.diagnostic.lower().startswith("x-unix;"):
        why = "a local delivery program failed (x-unix)"
    elif report.refused_at_rcpt:
        why = "refused at RCPT TO"
    else:
        why = "not shown refused at RCPT TO (a filter's answer after DATA)"
    return f"{rcpt.address or 'recipient'}: {_reread(rcpt)} read as {j.category}: {why}"
