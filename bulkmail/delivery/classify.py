"""What an SMTP reply means for a delivery: the pure classification step.

Every attempt ends in a ``Reply`` (a real server reply, or one we make up for a failure that
never reached a server: DNS, connect, TLS, SIZE, SMTPUTF8). ``classify_reply`` turns it into a
``Verdict``: a category for the operator, a disposition for the state machine (sent, deferred,
bounced, expired), whether to suppress the address, and the server's retry hint if it gave one.
The bounces module classifies DSNs with the same function, via ``reply_from_dsn``.

Decisions (REFERENCE.md "Enhanced status codes" is the spec; these fill its gaps):

- The enhanced code decides first, then the basic code, then the text. If the classes of the
  two disagree ("550 4.2.2"), the basic code's class wins: it is what RFC 5321 tells a client
  to act on.
- Any 4xx is deferred. Its category is QUOTA for X.2.2/X.2.3, POLICY for X.7.x (greylisting,
  rate limits for reputation: the operator should see them), SOFT otherwise. So "451 4.7.1
  greylisted" is POLICY/DEFERRED and "450 4.4.7" is SOFT/DEFERRED.
- X.2.2/X.2.3 defer even as 5xx. X.4.x defers even as 5xx (the table's "soft" row), except
  5.4.7, which is EXPIRED (a relay gave up on its own delay).
- 5.5.3 and a 552 saying "too many recipients" defer (RFC 5321 4.5.3.1.10: treat as temporary).
- 5.1.7/5.1.8 (our sender address is refused) are POLICY: the problem is ours, not the
  recipient's, so never suppress on them.
- Text heuristics for a 5xx without a specific enhanced code: quota words first, then policy
  words, then content words, then unknown-user words. Policy wins over unknown-user because a
  wrong suppression loses a subscriber for good while a wrong bounce costs one message.
- A plain 550/551/553 with no enhanced code and no clue is HARD and suppressed: RFC 5321
  defines 550 as "mailbox unavailable" and that is what most MTAs mean by it. With an
  unspecific enhanced code ("550 5.0.0 rejected") and no clue it is UNKNOWN, bounced, not
  suppressed.
- A code that is not 2xx/4xx/5xx (a broken server) is UNKNOWN and deferred: retrying is safe,
  and the delivery expires if it never improves.
- TLS required but not offered is 451 4.7.5 (deferred), as Postfix does: it may be a transient
  fault or a STARTTLS-stripping attacker, and the message expires if it never gets fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from bulkmail.delivery.taxonomy import SUPPRESSING, BounceClass, classify


class Category(StrEnum):
    """Why the attempt ended as it did (for reports and the operator)."""

    DELIVERED = "delivered"
    HARD = "hard"
    QUOTA = "quota"
    SOFT = "soft"
    POLICY = "policy"
    CONTENT = "content"
    PROTOCOL = "protocol"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class Disposition(StrEnum):
    """What the delivery's state becomes."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: basic code, text without the enhanced code, enhanced code like "5.1.1"."""

    code: int
    text: str
    enhanced: str | None = None

    def __str__(self) -> str:
        parts = [str(self.code), self.enhanced or "", self.text]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Verdict:
    """The classification of one reply. ``retry_after`` is the server's hint, in seconds."""

    category: Category
    disposition: Disposition
    suppress: bool
    retry_after: float | None = None
    #: The named class (``delivery.taxonomy``): what events, suppressions and reports say.
    bounce_class: BounceClass = field(default=BounceClass.UNCATEGORISED, compare=False)


_ENHANCED = re.compile(r"^\s*#?([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$|[,;:)]|\.(?:\s|$))")


def parse_reply(code: int, message: str) -> Reply:
    """Build a Reply from a code and the reply text, lifting the enhanced code off its front.

    For a multi-line reply, the code is stripped from every line that repeats it.
    """
    lines = message.strip().splitlines() or [""]
    match = _ENHANCED.match(lines[0])
    if match is None:
        return Reply(code, "\n".join(line.strip() for line in lines))
    enhanced = ".".join(str(int(g)) for g in match.groups())
    stripped = []
    for line in lines:
        m = _ENHANCED.match(line)
        if m is not None and ".".join(str(int(g)) for g in m.groups()) == enhanced:
            line = line[m.end() :].lstrip(".,;:")
        stripped.append(line.strip())
    return Reply(code, "\n".join(stripped).strip(), enhanced)


_DIAGNOSTIC = re.compile(r"^\s*([245]\d\d)(?:[ -]|$)(.*)$", re.DOTALL)


def reply_from_dsn(status: str, diagnostic_code: str | None = None) -> Reply:
    """A Reply from a DSN recipient block: ``Status: 5.1.1`` and ``Diagnostic-Code: smtp; ...``.

    The Status field is the enhanced code (a more specific one in the diagnostic wins over an
    X.0.0 status). The basic code comes from an "smtp;" diagnostic of
    the same class when there is one, otherwise from the status class (5.x.x -> 550,
    4.x.x -> 450, 2.x.x -> 250). A malformed status leaves ``enhanced`` unset; with no usable
    code at all the code is 0, which classifies as UNKNOWN.
    """
    match = _ENHANCED.match(status or "")
    enhanced = ".".join(str(int(g)) for g in match.groups()) if match else None
    text = ""
    diag_code: int | None = None
    if diagnostic_code:
        kind, sep, rest = diagnostic_code.partition(";")
        detail = rest if sep else kind
        if not sep or kind.strip().lower() == "smtp":
            m = _DIAGNOSTIC.match(detail.strip())
            if m is not None:
                diag_code, detail = int(m.group(1)), m.group(2)
        parsed = parse_reply(0, " ".join(detail.split()))
        text = parsed.text
        # The diagnostic's own code beats the Status field: receivers' DSN generators often
        # put a generic or wrong Status ("Status: 5.1.1" over "550 5.7.1 IP blacklisted").
        if parsed.enhanced and parsed.enhanced[0] == (enhanced or parsed.enhanced)[0]:
            enhanced = parsed.enhanced
    if enhanced is None:
        return Reply(diag_code or 0, text)
    if diag_code is None or diag_code // 100 != int(enhanced[0]):
        diag_code = int(enhanced[0]) * 100 + 50
    return Reply(diag_code, text, enhanced)


# -- Replies for failures that never produced a server reply -------------------------------


def connection_failed(detail: str = "") -> Reply:
    """Connection refused, reset or timed out: deferred (4.4.1)."""
    return Reply(451, _join("Connection failed", detail), "4.4.1")


def dns_temporary(detail: str = "") -> Reply:
    """SERVFAIL, DNS timeout or unusable MX hosts: deferred (4.4.3)."""
    return Reply(451, _join("Temporary DNS failure", detail), "4.4.3")


def no_such_domain(domain: str) -> Reply:
    """NXDOMAIN for the recipient domain: bounced and suppressed (5.1.2)."""
    return Reply(550, f"Domain {domain} does not exist", "5.1.2")


def null_mx(domain: str) -> Reply:
    """The domain publishes a null MX (RFC 7505): bounced and suppressed without connecting."""
    return Reply(556, f"Domain {domain} does not accept mail (null MX)", "5.1.10")


def smtputf8_unsupported(detail: str = "") -> Reply:
    """A non-ASCII address and a server without SMTPUTF8 (RFC 6531): content bounce (5.6.7)."""
    return Reply(553, _join("Server does not support SMTPUTF8", detail), "5.6.7")


def tls_unavailable(detail: str = "") -> Reply:
    """Policy requires TLS and the server does not offer it, or the handshake failed (4.7.5)."""
    return Reply(451, _join("TLS is required but unavailable", detail), "4.7.5")


def message_too_big(size: int, limit: int) -> Reply:
    """The message exceeds the server's SIZE limit (RFC 1870): content bounce (5.3.4)."""
    return Reply(552, f"Message size {size} exceeds the server limit {limit}", "5.3.4")


def _join(summary: str, detail: str) -> str:
    return f"{summary}: {detail}" if detail else summary


# -- Classification ------------------------------------------------------------------------

_QUOTA_CODES = frozenset({"2.2", "2.3"})

# For the category of a 4xx (the class comes from ``delivery.taxonomy``).
_QUOTA_WORDS = re.compile(
    r"quota|mailbox (?:is )?full|storage allocation|insufficient storage|out of storage"
)
_POLICY_WORDS = re.compile(r"spam|blocked|black ?list|block ?list|reputation|policy")

_RETRY_HINT = re.compile(
    r"(?:try again|retry|greylisted)(?: later)?(?: after| in| for)?\s+"
    r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)?\b"
)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def classify_reply(reply: Reply, refused_at_rcpt: bool | None = None) -> Verdict:
    """Classify one reply: the taxonomy's class, and what it means for the delivery.

    ``refused_at_rcpt``: for a DSN, whether it says the receiver refused at RCPT TO (see
    ``taxonomy.classify``); None at SMTP time.
    """
    klass = reply.code // 100
    text = reply.text.lower()
    if klass == 2:
        return Verdict(Category.DELIVERED, Disposition.SENT, False)
    hint = retry_hint(text)
    named = classify(reply.code, reply.enhanced, text, refused_at_rcpt)
    if klass == 4:
        category = _temporary_category(reply, text)
        return Verdict(category, Disposition.DEFERRED, False, hint, named)
    if klass != 5:
        return Verdict(Category.UNKNOWN, Disposition.DEFERRED, False, hint, named)
    category, disposition = _PERMANENT[named]
    retry = hint if disposition is Disposition.DEFERRED else None
    return Verdict(category, disposition, named in SUPPRESSING, retry, named)


#: What a 5xx of each class means for the delivery (category for reports, state).
_PERMANENT: dict[BounceClass, tuple[Category, Disposition]] = {
    BounceClass.INVALID_RECIPIENT: (Category.HARD, Disposition.BOUNCED),
    BounceClass.BAD_DOMAIN: (Category.HARD, Disposition.BOUNCED),
    BounceClass.INACTIVE_MAILBOX: (Category.SOFT, Disposition.BOUNCED),
    BounceClass.QUOTA: (Category.QUOTA, Disposition.DEFERRED),
    BounceClass.POLICY: (Category.POLICY, Disposition.BOUNCED),
    BounceClass.SPAM_BLOCK: (Category.POLICY, Disposition.BOUNCED),
    BounceClass.SPAM_CONTENT: (Category.POLICY, Disposition.BOUNCED),
    BounceClass.RELAYING: (Category.POLICY, Disposition.BOUNCED),
    BounceClass.VIRUS: (Category.CONTENT, Disposition.BOUNCED),
    BounceClass.CONTENT: (Category.CONTENT, Disposition.BOUNCED),
    BounceClass.ROUTING: (Category.SOFT, Disposition.DEFERRED),
    BounceClass.PROTOCOL: (Category.PROTOCOL, Disposition.BOUNCED),
    BounceClass.EXPIRED: (Category.EXPIRED, Disposition.EXPIRED),
    BounceClass.TRANSIENT: (Category.SOFT, Disposition.DEFERRED),
    BounceClass.UNCATEGORISED: (Category.UNKNOWN, Disposition.BOUNCED),
}


def bounce_is_hard(verdict: Verdict) -> bool:
    """True when the address itself is bad: bounced and to be suppressed."""
    return verdict.disposition is Disposition.BOUNCED and verdict.suppress


def retry_hint(text: str) -> float | None:
    """Seconds from "try again in 5 minutes" / "retry after 60" / "greylisted for 300s"."""
    match = _RETRY_HINT.search(text.lower())
    if match is None:
        return None
    unit = (match.group(2) or "s")[0]
    return float(match.group(1)) * _UNIT_SECONDS[unit]


def _subject_detail(reply: Reply) -> str | None:
    """ "1.1" from "5.1.1"; None when there is no enhanced code."""
    if reply.enhanced is None:
        return None
    return reply.enhanced.split(".", 1)[1]


def _temporary_category(reply: Reply, text: str) -> Category:
    subject_detail = _subject_detail(reply)
    if subject_detail in _QUOTA_CODES:
        return Category.QUOTA
    if subject_detail is not None and subject_detail.startswith("7."):
        return Category.POLICY
    if subject_detail is None or subject_detail.endswith(".0"):
        if _QUOTA_WORDS.search(text):
            return Category.QUOTA
        if _POLICY_WORDS.search(text) or "greylist" in text:
            return Category.POLICY
    return Category.SOFT
