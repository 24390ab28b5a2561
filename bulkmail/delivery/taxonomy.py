"""The named bounce classes, and the rules that give one to an SMTP reply (pure).

One set of rules for every failure, whether it came back at SMTP time (``delivery.classify``)
or later in a DSN (``bounces``): the classifier, the events, the suppressions and the report
all speak of these classes. They are the classes a bulk MTA operator knows (KumoMTA's, built
on RFC 3463 and the IANA enhanced-status registry):

==================  ========================================================  ==========
class               what it means                                             suppresses
==================  ========================================================  ==========
invalid_recipient   the mailbox does not exist (X.1.1, X.1.3, X.1.6, words)    yes
bad_domain          the domain does not exist or takes no mail (X.1.2, X.1.10) yes
inactive_mailbox    the mailbox exists but is disabled, suspended, inactive    no (adds up)
quota               the mailbox is full (X.2.2, X.2.3)                         no (adds up)
policy              refused by the receiver's policy (X.7.x, our sender)       no
spam_block          our IP or domain is on a blocklist / has a bad reputation  no
spam_content        this message was taken for spam                            no
virus               this message was taken for a virus                         no
content             size, format, encoding (X.3.4, X.6.x)                      no
routing             no route, DNS or connection trouble (X.4.x)                no
protocol            the SMTP conversation went wrong (X.5.x)                   no
relaying            the server will not relay for us                           no
expired             a relay gave up after retrying (X.4.7)                     no
transient           a temporary failure: try again (4xx, rate and volume caps) no
uncategorised       nothing says more                                          no
==================  ========================================================  ==========

Only the recipient-fault classes suppress: the address itself is bad. Inactive and full
mailboxes are the recipient's too, but they can come back: they count towards the soft-bounce
escalation instead. Anything about *us* (blocklists, reputation, rate limits, policy, content)
never suppresses, because a wrong suppression loses a subscriber for good.

Order of the rules: words that name a cause beyond doubt first (a blocklist URL, "rate
limit", "over quota", "account disabled", a virus), because receivers often pair them with a
generic or wrong code ("553 5.1.3 http://www.spamhaus.org/..."); then a specific enhanced
code; then, for an unspecific code (X.0.0, X.1.0, X.2.0, X.3.x, X.5.0), the words; last the
basic code. Policy and spam words beat unknown-user words.
"""

from __future__ import annotations

import re
from enum import StrEnum


class BounceClass(StrEnum):
    INVALID_RECIPIENT = "invalid_recipient"
    BAD_DOMAIN = "bad_domain"
    INACTIVE_MAILBOX = "inactive_mailbox"
    QUOTA = "quota"
    POLICY = "policy"
    SPAM_BLOCK = "spam_block"
    SPAM_CONTENT = "spam_content"
    VIRUS = "virus"
    CONTENT = "content"
    ROUTING = "routing"
    PROTOCOL = "protocol"
    RELAYING = "relaying"
    EXPIRED = "expired"
    TRANSIENT = "transient"
    UNCATEGORISED = "uncategorised"


#: The classes that suppress the address at once: the address itself is bad.
SUPPRESSING = frozenset({BounceClass.INVALID_RECIPIENT, BounceClass.BAD_DOMAIN})
#: The recipient's own, but curable: repeated, they suppress (soft-bounce escalation).
ADDS_UP = frozenset({BounceClass.INACTIVE_MAILBOX, BounceClass.QUOTA})


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


# Causes named beyond doubt, whatever code comes with them.
_SPAM_BLOCK = _words(
    r"spamhaus|spamcop|barracuda|sorbs|dnsbl|\brbl\b|uceprotect|spam-?rats|abuseat",
    r"black ?list|block ?list|blacklisted|blocklisted|deny ?list",
    r"(?<!not )listed (?:on|in|at|by)\b|\bbl\?ip=|/query/(?:bl|ip)",
    r"reputation|\bip (?:address )?(?:\S+ )?(?:is )?(?:blocked|banned|rejected|not allowed)",
    r"blocked (?:by|using|because|due)|has been blocked|are blocked",
    r"\b(?:client|sender|connecting) (?:host|ip)\b.{0,40}(?:rejected|refused|blocked)",
    r"poor (?:sending )?reputation|low reputation|bad reputation",
)
_RATE = _words(
    r"rate limit|rate-limit|ratelimit|throttl|too many (?:messages|connections|concurrent|mails)",
    r"(?:sending|message|daily|hourly|volume|recipient) (?:limit|quota) (?:exceeded|reached)",
    r"exceeded (?:the )?(?:\w+ )?(?:sending|message|rate|daily|hourly|connection) (?:limit|rate)",
    r"limit (?:exceeded|reached) for|too much mail|slow down",
)
_QUOTA = _words(
    r"quota|mailbox (?:is )?full|mailbox size|storage allocation|insufficient (?:disk )?space",
    r"insufficient storage|out of storage|exceeds? (?:the )?(?:allowed|maximum) (?:mailbox )?size",
    r"mailbox exceeds|disk full|over the limit of|mail ?box is over|full mailbox",
)
_INACTIVE = _words(
    r"\binactive\b|(?:account|mailbox|address|user)(?: is| has been)? (?:disabled|deactivated"
    r"|suspended|closed|expired|frozen|locked|not active)",
    r"(?:disabled|suspended|deactivated|inactive) (?:account|mailbox|recipient|user|address)",
    r"no longer (?:active|in use|available|valid)",
)
_VIRUS = _words(r"virus|malware|infected|trojan|malicious (?:content|attachment)")
_SPAM_CONTENT = _words(
    r"(?:message|content|mail|it) (?:was |is |looks like |appears to be )?(?:detected as |"
    r"classified as |considered |identified as |rejected as )?spam\b",
    r"\bspam (?:content|message|detected|score)|spam ?assassin|high spam|likely spam|as spam",
    r"content (?:rejected|filter)|message content rejected|suspicious content|phishing",
)
_RELAYING = _words(
    r"relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed|prohibited)|not permitted to"
    r" relay|unable to relay|insecure mail relay|we do not relay|relaying denied|no relaying"
)
_POLICY = _words(
    r"\bpolicy\b|\bspam\b|blocked|refused|not authori[sz]ed|authentication (?:required|failed)",
    r"\bspf\b|\bdkim\b|\bdmarc\b|reverse dns|\bptr\b|rdns|helo|not allowed|denied|forbidden",
    r"recipient preferences|not accepting mail from|sender (?:address )?rejected",
)
_BAD_DOMAIN = _words(
    r"host or domain name not found|domain (?:name )?not found|no such domain|unrouteable address",
    r"domain (?:does not|doesn't) exist|unknown domain|domain (?:is )?(?:invalid|unknown)",
    r"couldn't find (?:a mail exchanger|any host)|host unknown|host (?:\S+ )?not found",
    r"unknown host",
    r"(?:mx|srv) record indicated no smtp service|null mx|does not accept mail",
    r"no mx (?:record|host)|name service error .{0,60}host not found|nxdomain",
    r"domain (?:is )?not (?:reachable|resolvable)",
)
_INVALID_RECIPIENT = _words(
    r"user unknown|unknown user|user not found|users? (?:does not|doesn't|not) exist",
    r"no such (?:user|mailbox|recipient|address|account|person)",
    r"unknown (?:recipient|address|mailbox)|does not exist",
    r"mailbox unavailable|mailbox not found|not a valid (?:mailbox|recipient|user|address)",
    r"invalid (?:recipient|mailbox|user|address)|recipient (?:address )?(?:is )?invalid",
    r"adresse destinataire invalide|recipient name is not recognized|not (?:a )?known user",
    r"recipient (?:not found|unknown)|recipient address rejected|address rejected|no mailbox",
    r"(?:doesn't|does not) have an? [\w.-]+ account|account (?:does not|doesn't) exist",
    r"no (?:such )?account|bad (?:recipient|destination (?:mailbox )?address)|unknown local part",
    r"not (?:listed in|found in) (?:the )?(?:[\w-]+ )?(?:directory|address book|recipient table)",
    r"address (?:could ?n[o']t|cannot|can't) be found|address not found",
    r"undeliverable address",
    r"email account that you tried to reach does not exist|address (?:is )?not (?:found|valid)",
    r"check (?:if|that|whether) (?:the )?(?:e-?mail |recipient'?s? )?address is (?:correct|valid)",
)
# The recipient exists and chose not to receive this (its settings, a filter it set up).
_REFUSED_BY_CHOICE = _words(
    r"recipient(?:'s)? preferences|refused by (?:the )?recipient|blocked by (?:the )?recipient"
    r"|recipient (?:has )?(?:blocked|rejected) (?:you|the sender|your)"
)
# The bare phrase filters use for a refused sender (the reference's "filtered" after DATA).
_BARE_USER_UNKNOWN = _words(r"\buser unknown\b|\bunknown user\b|\buser not exist\b")
_DISK_SPACE = _words(r"not enough (?:disk )?space|no space left")
# Words that name a missing mailbox and nothing else (not Postfix's generic "Recipient address
# rejected: ...", which prefixes any restriction).
_NO_SUCH_USER = _words(
    r"no such (?:user|mailbox|recipient)|user unknown|unknown user|user not found",
    r"(?:user|mailbox) (?:does not|doesn't) exist",
)
_DNS_RETRY = _words(r"not found,? try again|temporary (?:dns|lookup|name ?server) failure")
_TOO_MANY_RCPTS = _words(r"too many recipients")
_SIZE = _words(r"too (?:big|large)|size limit|exceeds? .{0,30}size|message size|message length")


def judged_note(klass: BounceClass, why: str = "by the bounce report") -> str:
    """What is appended to a recorded reply judged otherwise than its text alone would be (by
    ``bounces``: a bare "User unknown" not refused at RCPT TO, a report naming a full mailbox;
    at SMTP time: refused after DATA): the events, the report, the brakes and the soft-bounce
    count all classify the recorded text again, and must come to the same class."""
    return f" (judged {klass.value} {why})"


_NAMES = frozenset(c.value for c in BounceClass)
_JUDGED = re.compile(
    r"\(judged ([a-z_]+) (?:by the bounce report|as refused (?:after data|at rcpt to))\)\s*$",
    re.IGNORECASE,
)


def curable_cause(text: str) -> str:
    """ "quota" or "inactive_mailbox" when ``text`` names that cause, else "" (a report's own
    words: "Not enough disk space", "The user(s) account is disabled")."""
    if _QUOTA.search(text) or _DISK_SPACE.search(text):
        return BounceClass.QUOTA.value
    if _INACTIVE.search(text):
        return BounceClass.INACTIVE_MAILBOX.value
    return ""


def classify(
    code: int, enhanced: str | None, text: str, refused_at_rcpt: bool | None = None
) -> BounceClass:
    """The class of one failure reply: basic ``code``, ``enhanced`` ("5.1.1" or None), text.

    ``refused_at_rcpt`` is what a DSN says about when the receiver refused (None: not known,
    as at SMTP time). X.2.1 "mailbox disabled" is a bad address when it answered RCPT TO; said
    later (a filter after DATA, a forwarder's report) it is the mailbox's state, not the
    address's: an inactive mailbox. Likewise unknown-user words with no specific code (none,
    or X.0.0) are a bad address only at RCPT TO; said later they are a filter's refusal
    (policy), as the reference analyser's "filtered" (``bounces.stage`` says why).
    """
    judged = _JUDGED.search(text)
    if judged is not None and judged.group(1) in _NAMES:
        return BounceClass(judged.group(1))
    found = _classify(code, enhanced, text)
    if found is BounceClass.UNCATEGORISED and refused_at_rcpt and enhanced:
        # X.3.x ("mail system status") with unknown-user words, answering RCPT TO: the
        # address check itself refused it ("553 5.3.0 <x>... No such user here").
        if enhanced.split(".", 1)[1].startswith("3.") and _NO_SUCH_USER.search(text):
            return BounceClass.INVALID_RECIPIENT
    if found is BounceClass.INVALID_RECIPIENT and refused_at_rcpt is False:
        detail = enhanced.split(".", 1)[1] if enhanced else None
        if detail == "2.1":
            return BounceClass.INACTIVE_MAILBOX
        if detail in (None, "0.0") and _BARE_USER_UNKNOWN.search(text):
            if not _INVALID_RECIPIENT.search(_BARE_USER_UNKNOWN.sub(" ", text)):
                # Nothing but "User unknown", no code, not at RCPT TO: a filter speaking after
                # DATA (Japanese carriers say so for a blocked sender). Not suppressed.
                return BounceClass.POLICY
    return found


def _classify(code: int, enhanced: str | None, text: str) -> BounceClass:
    klass = code // 100 if code else int(enhanced[0]) if enhanced else 0
    detail = enhanced.split(".", 1)[1] if enhanced else None
    subject = detail.split(".")[0] if detail else None
    if klass == 2:
        return BounceClass.UNCATEGORISED
    # Causes named beyond doubt.
    if _SPAM_BLOCK.search(text):
        return BounceClass.SPAM_BLOCK
    if _RATE.search(text) or _TOO_MANY_RCPTS.search(text):
        return BounceClass.TRANSIENT
    if _QUOTA.search(text) and detail not in ("1.2", "1.10"):
        return BounceClass.QUOTA
    if _INACTIVE.search(text) and (subject in (None, "0", "2") or detail == "1.0"):
        return BounceClass.INACTIVE_MAILBOX
    if _VIRUS.search(text):
        return BounceClass.VIRUS
    if _REFUSED_BY_CHOICE.search(text):
        return BounceClass.POLICY
    if klass == 4:
        return _temporary(detail, text)
    if klass != 5:
        return BounceClass.UNCATEGORISED
    by_code = _by_enhanced(detail, text)
    if by_code is not None:
        return by_code
    return _by_text(text) or _by_basic_code(code, enhanced)


def _temporary(detail: str | None, text: str) -> BounceClass:
    if detail in ("2.2", "2.3"):
        return BounceClass.QUOTA
    if detail == "4.7":
        return BounceClass.EXPIRED
    if detail and detail.startswith("4."):
        return BounceClass.ROUTING
    if detail and detail.startswith("7."):
        return BounceClass.SPAM_CONTENT if _SPAM_CONTENT.search(text) else BounceClass.POLICY
    return BounceClass.TRANSIENT


def _by_enhanced(detail: str | None, text: str) -> BounceClass | None:
    """The class a specific enhanced code gives, or None when the code is unspecific."""
    if detail is None:
        return None
    subject = detail.split(".")[0]
    if detail in ("1.1", "1.3", "1.6", "2.1"):
        return BounceClass.INVALID_RECIPIENT
    if detail in ("1.2", "1.10"):
        return BounceClass.BAD_DOMAIN
    if detail in ("1.7", "1.8"):
        return BounceClass.POLICY  # our sender address is refused: never the recipient's fault
    if detail in ("2.2", "2.3"):
        return BounceClass.QUOTA
    if detail == "4.7":
        return BounceClass.EXPIRED
    if detail == "4.1" and "recipient address rejected" in text:
        return BounceClass.INVALID_RECIPIENT  # Exchange Online's directory check (5.4.1)
    if detail == "4.4" and (_BAD_DOMAIN.search(text) or "name service error" in text):
        return BounceClass.BAD_DOMAIN  # "5.4.4 Host or domain name not found" (Postfix, qmail)
    if subject == "4":
        return BounceClass.ROUTING
    if detail == "5.3":
        return BounceClass.TRANSIENT  # too many recipients: RFC 5321 says try again
    if detail == "3.4":
        return BounceClass.CONTENT
    if subject == "7":
        if _RELAYING.search(text):
            return BounceClass.RELAYING
        if _SPAM_CONTENT.search(text):
            return BounceClass.SPAM_CONTENT
        return BounceClass.POLICY
    if subject == "6":
        return BounceClass.SPAM_CONTENT if _SPAM_CONTENT.search(text) else BounceClass.CONTENT
    if subject == "5" and detail != "5.0":
        return BounceClass.PROTOCOL
    # X.0.0, X.1.0, X.2.0, X.3.x, X.5.0 and the rest: unspecific, the words decide. But X.2.x
    # (mailbox status) and X.3.x (mail system status) say the address itself is fine (RFC
    # 3463): "550 5.2.0 User unknown" is a filter's wording, not a missing mailbox.
    found = _by_text(text)
    if found in SUPPRESSING and subject in ("2", "3"):
        return BounceClass.UNCATEGORISED
    if found is not None:
        return found
    if subject == "2":
        return BounceClass.INACTIVE_MAILBOX if detail == "2.4" else BounceClass.UNCATEGORISED
    return BounceClass.PROTOCOL if detail == "5.0" else BounceClass.UNCATEGORISED


def _by_text(text: str) -> BounceClass | None:
    if _RELAYING.search(text):
        return BounceClass.RELAYING
    if _SPAM_CONTENT.search(text):
        return BounceClass.SPAM_CONTENT
    if _POLICY.search(text):
        return BounceClass.POLICY
    if _SIZE.search(text):
        return BounceClass.CONTENT
    if _BAD_DOMAIN.search(text):
        # "Name service error ...: Host not found, try again": a DNS failure, not an answer.
        return BounceClass.ROUTING if _DNS_RETRY.search(text) else BounceClass.BAD_DOMAIN
    if _INVALID_RECIPIENT.search(text):
        return BounceClass.INVALID_RECIPIENT
    return None


def _by_basic_code(code: int, enhanced: str | None) -> BounceClass:
    """No specific enhanced code, no words: RFC 5321's meaning of the basic code."""
    if enhanced is None and code in (550, 551, 553, 521, 556):
        return BounceClass.INVALID_RECIPIENT  # "mailbox unavailable": what most MTAs mean
    if code == 552:
        return BounceClass.QUOTA
    if code in (500, 501, 502, 503, 504):
        return BounceClass.PROTOCOL
    if code in (530, 534, 535, 538):
        return BounceClass.POLICY
    return BounceClass.UNCATEGORISED
