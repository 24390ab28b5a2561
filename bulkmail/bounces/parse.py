"""What a message in the bounce mailbox is: bytes in, a ``Report`` out (pure, never raises).

A message is one of: a bounce (RFC 3464 delivery-status report, or one of the plain-text
bounces many MTAs still send), a delay notice (``Action: delayed``), a complaint (an ARF
feedback report, RFC 5965, ``Feedback-Type: abuse``), an unsubscribe request (mail to our
``mailto:`` address whose subject is ``unsubscribe-<token>``), an auto-reply (vacation, out of
office: recognised so it is never counted as a bounce), or unknown (left alone).

The report also carries the identifiers that lead back to a delivery, in the order they are
trusted (``bulkmail.bounces.apply`` checks them against the secret):

1. VERP tokens: ``bounces+TOKEN@...`` in the envelope headers (To, Delivered-To,
   X-Original-To, Original-Recipient...), ARF's Original-Mail-From, or the returned message's
   Return-Path;
2. our ``X-Bulkmail-Delivery`` header, and 3. the Message-ID, both read only from the
   returned message (an inner part or the quoted text), never from the report's own header;
4. the recipient addresses the report names.

Nothing here knows the secret or the database: a token is only a candidate until verified.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from bulkmail.bounces import formats, heuristics, stage
from bulkmail.bounces.formats import add_field as _add_field
from bulkmail.bounces.formats import parse_fields as parse_fields
from bulkmail.delivery import taxonomy

BOUNCE, DELAYED, COMPLAINT = "bounce", "delayed", "complaint"
UNSUBSCRIBE, AUTOREPLY, UNKNOWN = "unsubscribe", "autoreply", "unknown"
KINDS = (BOUNCE, DELAYED, COMPLAINT, UNSUBSCRIBE, AUTOREPLY, UNKNOWN)

#: Feedback types that mean "the recipient called this spam" (RFC 5965 section 7.3).
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})

TOKEN = r"[0-9a-z]{1,13}-[0-9a-z]{1,13}-[a-z2-7]{16}"
_VERP_RE = re.compile(rf"\+({TOKEN})@", re.IGNORECASE)
_UNSUBSCRIBE_RE = re.compile(rf"\bunsubscribe-({TOKEN})\b", re.IGNORECASE)
_HEADER_TOKEN_RE = re.compile(
    rf"^[ \t>]*X-Bulkmail-Delivery:[ \t]*({TOKEN})\b", re.IGNORECASE | re.MULTILINE
)
_MESSAGE_ID_RE = re.compile(
    r"^[ \t>]*Message-ID:\s*(<[^<>\s]{3,250}>)", re.IGNORECASE | re.MULTILINE
)
_RETURN_PATH_RE = re.compile(r"^[ \t>]*Return-Path:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_ENVELOPE_HEADERS = (
    "to",
    "cc",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "original-recipient",
    "x-original-recipient",
    "resent-to",
)
_REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status")
_FEEDBACK_PART = "message/feedback-report"


@dataclass(frozen=True)
class Recipient:
    """One recipient a report speaks of. ``action`` and ``status`` are "" when unknown."""

    address: str  # lower-cased, "" when the report does not name it (redacted ARF)
    action: str  # failed | delayed | delivered | relayed | expanded | ""
    status: str  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str  # "smtp; 550 5.1.1 ..." (RFC 3464) or the text found, whitespace collapsed


@dataclass(frozen=True)
class Report:
    """What one message is, and what it says about which deliveries."""

    kind: str
    recipients: tuple[Recipient, ...] = ()
    verp_tokens: tuple[str, ...] = ()
    header_tokens: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()  # of the returned message, lower-cased, with <>
    unsubscribe_token: str | None = None
    feedback_type: str = ""
    reference: str = ""  # the message's own Message-ID, else a digest of its bytes
    subject: str = ""
    sender: str = ""  # the From address
    error: str = ""  # why the message could not be parsed ("" when it could)
    refused_at_rcpt: bool = False  # the report shows the refusal answered RCPT TO
    #: A curable cause (quota, inactive_mailbox) the report's own words name for its one
    #: failed recipient, whatever its diagnostic says ("" if none): see ``analyse.verdict``.
    text_cause: str = ""
    notes: tuple[str, ...] = field(default=())  # how the kind was decided, for the operator


def parse_report(data: bytes) -> Report:
    """Parse one raw message. Never raises: a broken message is ``unknown`` with ``error`` set."""
    reference = _digest(data)
    try:
        msg = email.message_from_bytes(data[:MAX_MESSAGE], policy=email.policy.compat32)
        report = _parse(msg)
        if report.kind in (BOUNCE, DELAYED):
            told = heuristics.human_text(msg)
            said = " ".join(r.diagnostic for r in report.recipients) + told
            failed = [r for r in report.recipients if r.action == "failed"]
            report = replace(
                report,
                refused_at_rcpt=stage.refused_at_rcpt(said),
                text_cause=taxonomy.curable_cause(told) if len(failed) == 1 else "",
            )
    except Exception as exc:  # noqa: BLE001 - the contract: a parse failure is a value
        return Report(UNKNOWN, reference=reference, error=f"{type(exc).__name__}: {exc}"[:300])
    return report if report.reference else replace(report, reference=reference)


def _parse(msg: Message) -> Report:
    own_id = header_text(msg.get("Message-ID", "")).strip().lower()
    inner = _inner_text(msg)
    base = Report(
        UNKNOWN,
        verp_tokens=_verp_tokens(msg, inner),
        header_tokens=_dedupe(t.lower() for t in _HEADER_TOKEN_RE.findall(inner)),
        message_ids=_dedupe(m.lower() for m in _MESSAGE_ID_RE.findall(inner)),
        reference=own_id[:250] if own_id.startswith("<") else "",
        subject=header_text(msg.get("Subject", "")),
        sender=heuristics.first_address(header_text(msg.get("From", ""))),
    )
    feedback = _first_part(msg, (_FEEDBACK_PART,))
    if feedback is not None or _report_type(msg) == "feedback-report":
        return _complaint(msg, feedback, base)
    status_parts = [p for p in _walk(msg) if p.get_content_type() in _REPORT_PARTS]
    if status_parts:
        fields = [block for part in status_parts for block in part_fields(part)]
        report = _delivery_status(fields, base, "delivery-status report")
        if report.recipients:
            return _explained(report, msg)
    texts = _leaf_texts(msg)
    ses = formats.ses_notification(texts)
    if ses is not None:
        return _ses(ses, base)
    jmrp = formats.jmrp_recipient(msg)
    if jmrp is not None and not heuristics.is_daemon(base.sender):
        note = "complaint (Microsoft JMRP: X-HmXmrOriginalRecipient)"
        return replace(
            base,
            kind=COMPLAINT,
            feedback_type="abuse",
            notes=(note,),
            recipients=(Recipient(heuristics.first_address(jmrp), "", "", "feedback-type: abuse"),),
        )
    blocks = formats.status_blocks(texts)
    if blocks:
        return _explained(_delivery_status(blocks, base, "delivery-status fields in text"), msg)
    match = _UNSUBSCRIBE_RE.search(base.subject)
    if match is not None:
        return replace(
            base,
            kind=UNSUBSCRIBE,
            unsubscribe_token=match.group(1).lower(),
            notes=("subject names an unsubscribe token",),
        )
    why = heuristics.autoreply_reason(msg, base.subject)
    if why and not heuristics.bounce_signals(msg, base.subject):
        return replace(base, kind=AUTOREPLY, notes=(why,))  # a DSN's Auto-Submitted is no reply
    text_bounce = heuristics.text_bounce(msg, base.subject, base.sender)
    if text_bounce is not None:
        found, note = text_bounce
        recipients = tuple(Recipient(*r) for r in found)
        kind = BOUNCE if any(r.action == "failed" for r in recipients) else DELAYED
        return replace(base, kind=kind, recipients=recipients, notes=(note,))
    if why:
        return replace(base, kind=AUTOREPLY, notes=(why,))
    return replace(base, notes=("not a bounce, complaint or unsubscribe request",))


# -- RFC 3464 delivery-status reports -------------------------------------------------------


def _delivery_status(blocks: list[dict[str, str]], base: Report, source: str) -> Report:
    recipients = []
    for block in blocks:
        if not any(k in block for k in ("final-recipient", "original-recipient", "action")):
            continue
        address = _typed_address(block.get("final-recipient")) or _typed_address(
            block.get("original-recipient")
        )
        status = (block.get("status", "").split() or [""])[0]
        recipients.append(
            Recipient(
                address,
                block.get("action", "").strip().lower(),
                status,
                _collapse(block.get("diagnostic-code", ""))[:MAX_DIAGNOSTIC],
            )
        )
    envelope = [_VERP_RE.findall(b.get("original-recipient", "")) for b in blocks]
    tokens = _dedupe([*base.verp_tokens, *(t.lower() for found in envelope for t in found)])
    actions = {r.action for r in recipients}
    if "failed" in actions:
        kind = BOUNCE
    elif "delayed" in actions:
        kind = DELAYED
    else:
        kind = UNKNOWN
    note = f"{source}, actions: {', '.join(sorted(actions)) or 'none'}"
    return replace(base, kind=kind, recipients=tuple(recipients), verp_tokens=tokens, notes=(note,))


def _explained(report: Report, msg: Message) -> Report:
    """A recipient without a Diagnostic-Code gets the words the notification says about it;
    a lone recipient without a usable address ("Final-Recipient: RFC822; @mx.example.org")
    gets the one failed address the notification's own text names, if it names just one."""
    if len(report.recipients) == 1 and not report.recipients[0].address:
        named = heuristics.failed_addresses(msg, report.sender)
        if len(named) == 1:
            report = replace(report, recipients=(replace(report.recipients[0], address=named[0]),))
    if all(r.diagnostic for r in report.recipients):
        return report
    human = heuristics.human_text(msg)
    recipients = tuple(
        r
        if r.diagnostic or not r.address
        else replace(r, diagnostic=heuristics.words_about(r.address, human))
        for r in report.recipients
    )
    return replace(report, recipients=recipients)


def _ses(data: dict[str, Any], base: Report) -> Report:
    """An Amazon SES notification (SNS JSON), with the identifiers of the headers it carries."""
    kind, found, feedback = formats.ses_recipients(data)
    headers = formats.ses_headers(data)
    mail = data.get("mail")
    mail = mail if isinstance(mail, dict) else {}
    envelope = " ".join(str(mail.get(k, "")) for k in ("source", "returnPath"))
    base = replace(
        base,
        verp_tokens=_dedupe([*base.verp_tokens, *(t.lower() for t in _VERP_RE.findall(envelope))]),
        header_tokens=_dedupe(t.lower() for t in _HEADER_TOKEN_RE.findall(headers)),
        message_ids=_dedupe(m.lower() for m in _MESSAGE_ID_RE.findall(headers)),
    )
    recipients = tuple(Recipient(*r) for r in found)
    note = f"Amazon SES notification: {kind or 'unknown type'}"
    if kind == "complaint":
        ours = COMPLAINT if feedback in COMPLAINT_TYPES else UNKNOWN
        return replace(
            base, kind=ours, feedback_type=feedback, recipients=recipients, notes=(note,)
        )
    if kind == "bounce":
        actions = {r.action for r in recipients}
        ours = BOUNCE if "failed" in actions else DELAYED if "delayed" in actions else UNKNOWN
        return replace(base, kind=ours, recipients=recipients, notes=(note,))
    return replace(base, kind=UNKNOWN, recipients=recipients, notes=(note,))


# -- RFC 5965 feedback reports (complaints) -------------------------------------------------


def _complaint(msg: Message, part: Message | None, base: Report) -> Report:
    fields: dict[str, str] = {}
    for block in part_fields(part) if part is not None else []:
        fields.update(block)
    feedback_type = fields.get("feedback-type", "abuse" if part is None else "").strip().lower()
    addresses = heuristics.all_addresses(fields.get("original-rcpt-to", ""))
    addresses = addresses or heuristics.all_addresses(fields.get("removal-recipient", ""))[:1]
    addresses = addresses or [heuristics.first_address(_inner_header(msg, "to"))]
    tokens = _dedupe(
        [
            *base.verp_tokens,
            *(t.lower() for t in _VERP_RE.findall(fields.get("original-mail-from", ""))),
        ]
    )
    kind = COMPLAINT if feedback_type in COMPLAINT_TYPES else UNKNOWN
    detail = f"feedback-type: {feedback_type or '?'}"
    if fields.get("user-agent"):
        detail += f"; user-agent: {_collapse(fields['user-agent'])}"
    return replace(
        base,
        kind=kind,
        feedback_type=feedback_type,
        verp_tokens=tokens,
        recipients=tuple(Recipient(a, "", "", detail) for a in addresses),
        notes=(f"feedback report ({detail})",),
    )


# -- MIME helpers ---------------------------------------------------------------------------


#: The most of a message that is parsed: the report parts come first (RFC 3464, RFC 5965), a
#: returned copy of the original message after them is all that a cut can lose.
MAX_MESSAGE = 1024 * 1024
#: The most of one header value that is read: decoding RFC 2047 words is quadratic in the
#: stdlib (a 3.4 MB subject of encoded words took 42 s), and no real header needs more.
MAX_HEADER = 8192
#: The most of one Diagnostic-Code kept (the classifier's word searches read all of it).
MAX_DIAGNOSTIC = 2000
#: The most MIME parts looked at in one message (a bounce has three or four).
MAX_PARTS = 200


def header_text(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, undecodable bytes replaced."""
    raw = str(value)[:MAX_HEADER]
    try:
        text = str(make_header(decode_header(raw)))
    except Exception:  # noqa: BLE001 - a malformed encoded word: keep the raw text
        text = raw
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def part_fields(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status or feedback-report part, names lower-cased."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload:
            if not isinstance(block, Message):
                continue
            fields: dict[str, str] = {}
            for k, v in block.items():
                if k.lower() == "final-recipient" and "final-recipient" in fields:
                    blocks.append(fields)  # a block run on without its blank line (AOL)
                    fields = {}
                _add_field(fields, k.lower(), _collapse(header_text(v)))
            if fields:
                blocks.append(fields)
            body = block.get_payload()
            if isinstance(body, str) and ":" in body:  # fields after a stray blank line
                blocks.extend(parse_fields(body))
        return blocks
    return parse_fields(heuristics.part_text(part))


def _first_part(msg: Message, types: Iterable[str]) -> Message | None:
    wanted = tuple(types)
    for part in _walk(msg):
        if part.get_content_type() in wanted:
            return part
    return None


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").lower()


def _walk(msg: Message) -> Iterator[Message]:
    """``msg.walk()``, bounded to MAX_PARTS parts."""
    for n, part in enumerate(msg.walk()):
        if n >= MAX_PARTS:
            return
        yield part


def _inner_parts(msg: Message) -> Iterator[Message]:
    for part in _walk(msg):
        if part is not msg:
            yield part


def _inner_text(msg: Message) -> str:
    """Everything but the report's own header: inner headers and every leaf's text."""
    chunks = []
    for part in _inner_parts(msg):
        chunks.append("".join(f"{k}: {header_text(v)}\n" for k, v in part.items()))
    for part in _walk(msg):
        if not part.is_multipart() and part.get_content_maintype() in ("text", "message"):
            chunks.append(heuristics.part_text(part))
    return "\n".join(chunks)


def _leaf_texts(msg: Message) -> str:
    """The decoded text of every text leaf (the whole body when the MIME structure is broken)."""
    chunks = []
    for part in _walk(msg):
        if not part.is_multipart() and part.get_content_maintype() in ("text", "multipart"):
            chunks.append(heuristics.part_text(part))
    return "\n".join(chunks).replace("\r\n", "\n")


def _inner_header(msg: Message, name: str) -> str:
    for part in _inner_parts(msg):
        if part.get(name) is not None and part.get_content_type() != _FEEDBACK_PART:
            return header_text(part.get(name))
    return ""


def _verp_tokens(msg: Message, inner: str) -> tuple[str, ...]:
    found: list[str] = []
    for name in _ENVELOPE_HEADERS:
        for value in msg.get_all(name, []):
            found += _VERP_RE.findall(header_text(value))
    for path in _RETURN_PATH_RE.findall(inner):
        found += _VERP_RE.findall(path)
    return _dedupe(t.lower() for t in found)


def _typed_address(value: str | None) -> str:
    """ "rfc822; <User@Example.com>" -> "user@example.com"."""
    if not value:
        return ""
    _kind, sep, rest = value.partition(";")
    return heuristics.first_address(rest if sep else value)


def _collapse(text: str) -> str:
    return " ".join(str(text).split())


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def _digest(data: bytes) -> str:
    """A stable reference for a message without a Message-ID: same bytes, same reference."""
    normal = b"\n".join(line.rstrip() for line in data.replace(b"\r\n", b"\n").split(b"\n"))
    return "sha256:" + hashlib.sha256(normal.strip()).hexdigest()[:40]
