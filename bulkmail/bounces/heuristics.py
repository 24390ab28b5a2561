"""Heuristics for the mail that does not follow a standard (pure): text bounces, auto-replies
(and the decoded text of a MIME part, which both the heuristics and the report parser read).

Many MTAs still send bounces as plain text quoting the SMTP reply (qmail's QSBMF, old Exim and
Sendmail, Yahoo, Exchange 2003...). One is recognised only when it comes from a mailer daemon
(or has a bounce subject, or an ``X-Failed-Recipients`` header) *and* names a failed address or
an SMTP reply: a person's mail that merely says "undeliverable" is not a bounce.
Addresses come from flufl.bounce's detectors and from the shapes below; the reply for each is
the first SMTP code after the address in the text (else anywhere in it).

Auto-replies (RFC 3834 ``Auto-Submitted``, the de-facto ``X-Autoreply``/``Precedence`` headers,
"Out of office"-style subjects) are recognised so they are never counted as bounces.
"""

from __future__ import annotations

import logging
import re
from email.message import Message

Found = tuple[str, str, str, str]  # (address, action, status, diagnostic) as in parse.Recipient

# The lookbehind anchors a match at the start of a run of local-part characters: without it a
# long run with no "@" is rescanned from every position (quadratic; 14 s for a 100 kB From).
_ADDRESS = (
    r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,256}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?"
)
_ADDRESS_RE = re.compile(_ADDRESS)
#: The most text of one part that is read (a bounce's own words fit in far less; a hostile
#: message must not make the heuristics' searches expensive).
MAX_PART_TEXT = 256 * 1024
#: The most failed recipients taken from one text bounce (each costs a search of the text).
MAX_RECIPIENTS = 100
# Senders that are mail systems, not people: the local part (or, for "MAILER-DAEMON <>", the
# display name) says so. "-admin" and "owner-" are mailing-list managers' error addresses.
_DAEMON_LOCAL = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|mailerdaemon|post[-_.]?master|mdaemon"
    r"|double-bounce|mail[-_.]?delivery[-_.]?(?:system|subsystem)?|mail[-_.]?administrator"
    r"|mail[-_.]?deliver[-_.]?system)$|-admin$|^owner-",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mailer[-_ ]?daemon|mail delivery (?:system|subsystem)|post[-_ ]?master", re.IGNORECASE
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status notification|failure|has failed|problem)"
    r"|failure notice|returned mail|mail delivery failed|could not be delivered"
    r"|non[- ]?deliver|delivery notification|warning: could not send|delayed mail"
    r"|mail system error",
    re.IGNORECASE,
)
# Where the returned copy of the message starts: nothing after it describes the failure.
_RETURNED = re.compile(
    r"^[ \t]*(?:-{2,}[^\n]*(?:copy of|original message|returned message|unsent message"
    r"|message follows|headers follow|original mail)[^\n]*"
    r"|[^\n]{0,40}\b(?:copy of (?:the |your )?(?:original )?message|original (?:message|mail)"
    r"(?: headers)? (?:follows|below|as follows)|message headers follow|headers of the original"
    r" message)[^\n]{0,20}"
    r"|(?:the )?original message (?:headers|follows):?|(?:Received: from|Return-Path: ?<)[^\n]*)"
    r"[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Replies without an enhanced code whose words say more than the classifier's word lists.
_KNOWN_PHRASES = (
    (
        re.compile(r"unrouteable address|domain (?:name )?not found|host unknown", re.IGNORECASE),
        "5.1.2",
    ),
    (
        re.compile(
            r"(?:doesn't|does not) have an? [\w.-]+ account|no mailbox here|"
            r"(?:account|mailbox) (?:has been )?(?:disabled|deactivated|closed)",
            re.IGNORECASE,
        ),
        "5.1.1",
    ),
)
_MAILER_DAEMON = re.compile(r"mailer[-_.]?daemon@", re.IGNORECASE)
_VERP_ADDRESS = re.compile(r"\+[0-9a-z]{1,13}-[0-9a-z]{1,13}-[a-z2-7]{16}@")
_FAILED_SHAPES = (
    re.compile(rf"^[ \t]*<({_ADDRESS})>:?", re.MULTILINE),  # qmail, Postfix, Yahoo
    re.compile(rf"^[ \t]+({_ADDRESS})[ \t]*(?:$|\son\s|:|\()", re.MULTILINE),  # Exim, Exchange
    re.compile(rf"^(?:[45]\d\d[ -])?<?({_ADDRESS})>?\.\.\. ", re.MULTILINE),  # Sendmail
    re.compile(rf"RCPT TO:?\s*<?({_ADDRESS})>?", re.IGNORECASE),
    re.compile(rf"(?:delivered|delivery) to:?\s+<?({_ADDRESS})>?", re.IGNORECASE),
    re.compile(rf"^[ \t]*<?({_ADDRESS})>?:(?:[ \t]|$)", re.MULTILINE),  # "addr: 550 5.1.1 ..."
    re.compile(rf"^[ \t]*>>>[ \t]*<?({_ADDRESS})>?", re.MULTILINE),  # ">>> addr" (Sendmail)
    re.compile(rf"^[ \t]*\*?[ \t]*<?({_ADDRESS})>?[ \t]*$", re.MULTILINE),  # a bare address line
    re.compile(  # DragonFly, OpenSMTPD, Microsoft: "error delivering your mail to <x>"
        rf"(?:deliver(?:ing)?|send(?:ing)?) (?:your |the )?(?:mail|message|e-?mail) to:?\s*"
        rf"<?({_ADDRESS})>?",
        re.IGNORECASE,
    ),
)
_SMTP_REPLY = re.compile(
    r"(?<![\w.#-])([45][0-5]\d)(?:[ -]|:\s|\s*#)(?:\s*#?([245]\.\d{1,3}\.\d{1,3})(?![\d.]\d))?"
)
_ENHANCED = re.compile(r"(?<![\w.])#?([45]\.\d{1,3}\.\d{1,3})(?![\w.]\w)")
_DELAY_WORDS = re.compile(
    r"not yet been delivered|warning message only|do not need to resend|will (?:continue to )?"
    r"(?:be )?retr|still (?:being )?tr(?:ying|ied)|delivery (?:is |has been )?delayed"
    r"|will keep trying|has been delayed|is delayed|only a temporary failure"
    r"|do not need to re-?send",
    re.IGNORECASE,
)
_PERMANENT_WORDS = re.compile(
    r"permanent(?:ly)?|fatal error|could not be delivered|was not delivered|undeliverable"
    r"|gave up|giving up|delivery has failed|unable to deliver|did not reach|cannot be reached"
    r"|address(?:es)?\W+failed|failed:|delivery errors?|error delivering|trouble delivering"
    r"|failure reasons?|rejected by (?:a |the )?(?:remote )?(?:mail )?server|user unknown"
    r"|no such (?:user|mailbox|domain)|invalid (?:user|recipient|address)|exceeds? (?:the )?"
    r"(?:allowed|maximum|mailbox)|could not (?:be )?deliver|couldn't (?:be )?deliver"
    r"|not (?:be )?delivered|delivery (?:to the following recipients? )?failed"
    r"|loop (?:alert|detected)|mail loop|too many hops|returned mail|failed addresses"
    r"|was aborted|no valid recipients|an error (?:has )?occurred",
    re.IGNORECASE,
)
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort|answer)|autoreply|auto:"
    r"|out of (?:the )?office|ooo\b|on vacation|vacation|away from (?:my|the) (?:mail|office)"
    r"|abwesenheit|r[ée]ponse automatique|absence|respuesta autom[áa]tica|risposta automatica"
    r"|i am (?:currently )?(?:out|away))",
    re.IGNORECASE,
)
_AUTOREPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-auto-reply",
    "x-vacation",
)

log = logging.getLogger(__name__)


def first_address(text: str) -> str:
    """The first address in ``text``, lower-cased, or ""."""
    match = _ADDRESS_RE.search(text or "")
    return match.group(0).strip(".").lower() if match else ""


def all_addresses(text: str) -> list[str]:
    """Every address in ``text``, lower-cased, in order, once each."""
    found = (m.group(0).strip(".").lower() for m in _ADDRESS_RE.finditer(text or ""))
    return list(dict.fromkeys(found))


def is_daemon(address: str) -> bool:
    """True for a mail system's own address (mailer-daemon@, postmaster@, list-admin@...)."""
    return bool(_DAEMON_LOCAL.search(address.partition("@")[0]))


def daemon_from(msg: Message) -> bool:
    """The From header is a mail system's (an address or a display name that says so)."""
    raw = str(msg.get("From", ""))[:2000]
    address = first_address(raw)
    if (address and is_daemon(address)) or (not address and _DAEMON_NAME.search(raw)):
        return True
    return bool(address and _DAEMON_NAME.search(raw.lower().replace(address, "")))


def null_return_path(msg: Message) -> bool:
    """A null reverse path: only notifications (DSNs, MDNs, auto-replies) are sent with one."""
    path = str(msg.get("Return-Path", "")).strip().lower()
    return path in ("<>", "<mailer-daemon>", "mailer-daemon")


def bounce_signals(msg: Message, subject: str) -> str:
    """Why ``msg`` looks like a bounce before its text is read ("" when nothing says so)."""
    if msg.get("X-Failed-Recipients") is not None:
        return "X-Failed-Recipients"
    if daemon_from(msg):
        return "from a mailer daemon"
    if _BOUNCE_SUBJECT.search(subject or "") and (
        null_return_path(msg) or msg.get("Auto-Submitted") is not None
    ):
        return "bounce subject from a machine"
    return ""


def autoreply_reason(msg: Message, subject: str) -> str:
    """Why ``msg`` is an auto-reply ("" if it is not one)."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in _AUTOREPLY_HEADERS:
        if msg.get(name) is not None:
            return f"{name} header"
    precedence = str(msg.get("Precedence", "") or msg.get("X-Precedence", "")).strip().lower()
    if precedence in ("auto_reply", "auto-reply", "junk"):
        return f"Precedence: {precedence}"
    if _AUTOREPLY_SUBJECT.search(subject or ""):
        return "auto-reply subject"
    return ""


def text_bounce(msg: Message, subject: str, sender: str) -> tuple[list[Found], str] | None:
    """The failed recipients of a non-standard bounce, and a note; None if it is not one.

    A machine must have sent it (``bounce_signals``, or a null return path), and its text must
    say that delivery failed (failure wording or an SMTP reply) unless X-Failed-Recipients
    names the failures outright.
    """
    failed_header = ", ".join(str(v) for v in msg.get_all("X-Failed-Recipients", []))
    signal = bounce_signals(msg, subject)
    if not signal and not null_return_path(msg):
        return None
    text = human_text(msg)
    says_failed = bool(
        _PERMANENT_WORDS.search(text) or _DELAY_WORDS.search(text) or find_reply(text)[0]
    )
    if not (says_failed or failed_header):
        return None  # says nothing about a failure: an acknowledgement, a notice...
    addresses = _candidates(msg, text, failed_header, sender)[:MAX_RECIPIENTS]
    found = [_recipient(address, text) for address in addresses]
    if not found:
        status, diagnostic = find_reply(text)
        if not status:
            return None
        found = [("", *_action(status, text), diagnostic)]
    return found, f"non-standard bounce (text; {signal or 'null return path'})"


def human_text(msg: Message) -> str:
    """The text a person would read first, without the returned copy of the message."""
    chunks: list[str] = []
    html: list[str] = []

    def visit(part: Message) -> None:
        if part.get_content_maintype() == "message":
            return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    visit(sub)
        elif part.get_content_type() == "text/plain" or part.get_content_maintype() == "multipart":
            chunks.append(part_text(part))  # a multipart that did not parse: its raw text
        elif part.get_content_type() == "text/html":
            html.append(re.sub(r"<[^>]*>", " ", part_text(part)))

    visit(msg)
    text = "\n".join(chunks or html).replace("\r\n", "\n")[:MAX_PART_TEXT]
    cut = _RETURNED.search(text)
    return text[: cut.start()] if cut else text


def part_text(part: Message) -> str:
    """The decoded text of a leaf part (transfer encoding and charset undone)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    payload = payload[:MAX_PART_TEXT]
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):  # unknown charset, or a name codecs cannot even look up
        return payload.decode("utf-8", "replace")


def find_reply(text: str) -> tuple[str, str]:
    """(enhanced status, "smtp; <reply>") of the first SMTP reply in ``text``, or ("", "")."""
    match = _SMTP_REPLY.search(text)
    if match is not None:
        code, enhanced = match.group(1), match.group(2)
        line = _line_from(text, match.start())
        if enhanced is None:
            nearby = _ENHANCED.search(line)
            enhanced = nearby.group(1) if nearby and nearby.group(1)[0] == code[0] else None
        return enhanced or f"{code[0]}.0.0", "smtp; " + " ".join(line.split())[:500]
    match = _ENHANCED.search(text)
    if match is not None:
        line = _line_from(text, text.rfind("\n", 0, match.start()) + 1)
        return match.group(1), " ".join(line.split())[:500]
    return "", ""


def _line_from(text: str, start: int) -> str:
    """The rest of the line at ``start`` plus one continuation line (replies wrap)."""
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    line = text[start:end]
    after = text[end + 1 : text.find("\n", end + 1) if text.find("\n", end + 1) > 0 else None]
    if after[:1] in (" ", "\t") and after.strip() and not _ADDRESS_RE.match(after.strip()):
        line += " " + after.strip()
    return line


def failed_addresses(msg: Message, sender: str) -> list[str]:
    """The failed addresses the notification's own text names (as a text bounce's are)."""
    failed_header = ", ".join(str(v) for v in msg.get_all("X-Failed-Recipients", []))
    return _candidates(msg, human_text(msg), failed_header, sender)[:MAX_RECIPIENTS]


def _candidates(msg: Message, text: str, failed_header: str, sender: str) -> list[str]:
    """The failed addresses: X-Failed-Recipients first (trusted as it is), then the detectors
    and the known shapes, else any address the report's own text names."""
    named = [a.lower() for a in _ADDRESS_RE.findall(failed_header)]
    found = _flufl_addresses(msg)
    for shape in _FAILED_SHAPES:
        found += [m.group(1).lower() for m in shape.finditer(text)]
    ours = {first_address(str(v)) for v in msg.get_all("To", []) + msg.get_all("Delivered-To", [])}

    def usable(address: str, excluded: set[str]) -> bool:
        return not (
            address in excluded
            or address == sender
            or is_daemon(address)
            or _VERP_ADDRESS.search(address) is not None
        )

    keep = [a for a in dict.fromkeys(a.strip(".") for a in named) if a]
    # A shape that names a failed recipient is trusted even when it is the report's own To
    # (a sender bouncing to itself); our VERP address and daemons never are recipients.
    keep += [
        a
        for a in dict.fromkeys(a.strip(".") for a in found)
        if a not in keep
        and not _MAILER_DAEMON.match(a)
        and (a.startswith("postmaster@") or usable(a, set()))
    ]
    if not keep:  # no known shape: any address the report's own words name but its envelope
        keep = [a for a in all_addresses(text) if usable(a, ours)]
    return keep


def _flufl_addresses(msg: Message) -> list[str]:
    """Addresses flufl.bounce's detectors find (they know many odd formats); [] on any error."""
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - a detector choking on odd input is not our failure
        log.debug("flufl.bounce failed on a message", exc_info=True)
        return []
    out = []
    for raw in (*sorted(permanent), *sorted(temporary)):
        address = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        address = first_address(address)
        if address:
            out.append(address)
    return out


def _recipient(address: str, text: str) -> Found:
    """(address, action, status, diagnostic): the SMTP reply on or after the address's line if
    there is one, else the words around it ("x@y on <date>\n The recipient name is not
    recognized"), from each place the text names it."""
    lower = text.lower()
    places = [m.start() for m in re.finditer(re.escape(address), lower)][:3]
    status = diagnostic = ""
    for at in places:
        start = text.rfind("\n", 0, at) + 1
        if _SMTP_REPLY.match(text, start) and start < at:  # "554 <x@y>... Host unknown"
            status, diagnostic = find_reply(_line_from(text, start))
        else:
            status, diagnostic = find_reply(text[at : at + 800])
        if status:
            break
    if not status:
        status, reply = find_reply(text)
        diagnostic = " ".join(_context(text, at) for at in places)[:500] or reply
        if reply and reply not in diagnostic:
            diagnostic = f"{diagnostic} {reply}".strip()[:500]
    action, status = _action(status, text)
    if action == "failed" and status.endswith(".0.0"):
        status = _status_from_words(diagnostic, status)
    return address, action, status, diagnostic


def words_about(address: str, text: str) -> str:
    """What ``text`` says about ``address``: the reply after it, else the lines around it."""
    at = text.lower().find(address.lower())
    if at < 0:
        return ""
    status, reply = find_reply(text[at : at + 800])
    return reply if status else _context(text, at)


def _context(text: str, at: int) -> str:
    """The line naming an address and the few lines after it, up to a blank line."""
    start = text.rfind("\n", 0, at) + 1
    lines = text[start:].split("\n")
    kept = [lines[0]]
    blank = False
    for line in lines[1:6]:
        if not line.strip():
            if blank or len(kept) > 1:
                break
            blank = True  # one blank line between "... to <x>." and the reason is allowed
            continue
        if _ADDRESS_RE.search(line) and "(" not in line or _RETURNED.match(line):
            break
        kept.append(line)
    return " ".join(" ".join(kept).split())[:500]


def _status_from_words(diagnostic: str, status: str) -> str:
    for pattern, known in _KNOWN_PHRASES:
        if pattern.search(diagnostic):
            return known
    return status


def _action(status: str, text: str) -> tuple[str, str]:
    """(action, status): delay notices say so in words; otherwise the code's class decides."""
    if _DELAY_WORDS.search(text):
        return "delayed", status or "4.0.0"
    if status.startswith("4") and not _PERMANENT_WORDS.search(text):
        return "delayed", status
    return "failed", status or "5.0.0"
