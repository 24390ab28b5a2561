"""Which SMTP command a bounce's refusal answered, as far as the report shows it (pure).

It matters for one decision: "550 User unknown" refused at RCPT TO is the receiver's address
check, the best proof there is that the mailbox does not exist. The same words after DATA
(the message was already accepted for that recipient, then refused) come from a filter that
has read the message: Japanese mobile carriers and many content filters answer "user
unknown" for a sender the recipient has blocked. The reference analyser (sisimai) calls the
latter "filtered" for the same reason, and so does ``delivery.taxonomy``: not a bad address.

The report says so in several dialects:

- Postfix: "(in reply to RCPT TO command)", "(in reply to end of DATA command)";
- Exim: "SMTP error from remote mail server after RCPT TO:<x>:", "... after end of data:";
- Sendmail transcripts: the last ">>> COMMAND" line before the first "<<< 5xx" reply;
- Others: "SMTP:RCPT host ...", "RCPT TO:<x>" quoted with the reply, "Recipient address
  rejected" (only RCPT TO can refuse an address as such).
"""

from __future__ import annotations

import re

RCPT, DATA, MAIL = "RCPT", "DATA", "MAIL"

_PHRASES = re.compile(
    r"in reply to (?P<a>rcpt to|mail from|end of data|data)\b"
    r"|\bafter (?P<b>rcpt to|mail from|end of data|data)\b"
    r"|\bsmtp:(?P<c>rcpt|data|mail)\b"
    r"|\b(?P<d>rcpt) command\b",
    re.IGNORECASE,
)
_SENT = re.compile(r"^[ \t]*>>>[ \t]*(\S+)", re.MULTILINE)
_REFUSED = re.compile(r"^[ \t]*<<<[ \t]*[45]\d\d", re.MULTILINE)
# A bare mention ("RCPT TO:<x>", "Remote-MTA said at RCPT"), but not Sendmail's "503 Need
# RCPT": that is the reply to DATA after the recipient was refused, and says nothing of when.
_BARE_RCPT = re.compile(r"(?<![a-z])(?<!need )RCPT(?![a-z])", re.IGNORECASE)
# Words that say the address was refused as such, which only the RCPT TO answer can do
# (Postfix's "Recipient address rejected", Oracle's "Remote SMTP server has rejected address").
_ADDRESS_REFUSED = re.compile(
    r"recipient address rejected|rejected (?:the )?(?:recipient )?address", re.IGNORECASE
)


def _name(said: str) -> str:
    word = said.split()[0].upper() if said.split() else ""
    if word in ("RCPT", "MAIL"):
        return word
    return DATA if word in ("DATA", "END", ".") else word


def refusal_stages(text: str) -> set[str]:
    """The commands (RCPT, DATA, MAIL...) that refusals in ``text`` answered, as far as said."""
    found = {_name(next(g for g in m.groups() if g)) for m in _PHRASES.finditer(text)}
    sent = [(m.start(), m.group(1)) for m in _SENT.finditer(text)]
    for refused in _REFUSED.finditer(text):
        before = [command for at, command in sent if at < refused.start()]
        if before:
            found.add(_name(before[-1]))
    if _ADDRESS_REFUSED.search(text):
        found.add(RCPT)
    return found


def refused_at_rcpt(text: str) -> bool:
    """True when the report shows a refusal that answered RCPT TO (in a report about several
    recipients, one is enough: the report-level answer errs towards the address check)."""
    stages = refusal_stages(text)
    if stages:
        return RCPT in stages
    return _BARE_RCPT.search(text) is not None
