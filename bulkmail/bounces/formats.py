"""Reports that arrive in other shapes than a clean RFC 3464/5965 MIME report (pure).

- Delivery-status fields in the text: Amazon WorkMail and others paste the RFC 3464 fields
  into a text/plain part, and a report whose MIME boundary is broken (the declared boundary
  is not the one used) leaves its delivery-status part unparsed: the fields are still in the
  text, so they are read from it.
- Amazon SES notifications (SNS JSON): ``notificationType`` Bounce, Complaint or Delivery,
  with the recipients, their status and diagnostic in JSON.
- Microsoft's JMRP complaints: a message/rfc822 copy carrying ``X-HmXmrOriginalRecipient``.
"""

from __future__ import annotations

import json
import re
from email.message import Message
from typing import Any

Found = tuple[str, str, str, str]  # (address, action, status, diagnostic) as in parse.Recipient

_FIELD_START = re.compile(
    r"^[ \t]*(?:Final|Original)-Recipient:[ \t]*(?:rfc822|RFC822)?", re.MULTILINE | re.IGNORECASE
)
_SES_FOLD = re.compile(r"!\r?\n ?")  # SES folds its long JSON line with "!" + newline


def status_blocks(text: str) -> list[dict[str, str]]:
    """RFC 3464 per-recipient field blocks found in free text (empty if there are none)."""
    if "recipient:" not in text.lower():
        return []
    blocks = []
    for match in _FIELD_START.finditer(text):
        start = text.rfind("\n\n", 0, match.start())
        start = 0 if start < 0 else start
        chunk = text[start : match.start() + 2000]
        for block in parse_fields(chunk):
            if ("final-recipient" in block or "original-recipient" in block) and (
                "action" in block or "status" in block
            ):
                if block not in blocks:
                    blocks.append(block)
                break
    return blocks


def ses_notification(text: str) -> dict[str, Any] | None:
    """The JSON of an Amazon SES notification delivered over SNS email, or None."""
    if '"notificationType"' not in text[:20000]:
        return None
    start = text.find("{")
    if start < 0:
        return None
    body = _SES_FOLD.sub("", text[start:]).strip()
    try:
        data, _end = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):  # raw SNS envelope
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    return data if isinstance(data, dict) and "notificationType" in data else None


def ses_recipients(data: dict[str, Any]) -> tuple[str, list[Found], str]:
    """(kind, recipients, feedback type) of an SES notification; kind "" when not one we read."""
    kind = str(data.get("notificationType", "")).lower()
    if kind == "bounce":
        bounce = data.get("bounce") or {}
        permanent = str(bounce.get("bounceType", "")).lower() == "permanent"
        out = []
        for r in bounce.get("bouncedRecipients") or []:
            if not isinstance(r, dict):
                continue
            status = str(r.get("status") or ("5.0.0" if permanent else "4.0.0"))
            action = str(r.get("action") or ("failed" if permanent else "delayed")).lower()
            diagnostic = str(r.get("diagnosticCode") or bounce.get("bounceSubType") or "")
            out.append((str(r.get("emailAddress", "")).lower(), action, status, diagnostic))
        return "bounce", out, ""
    if kind == "complaint":
        complaint = data.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        out = [
            (str(r.get("emailAddress", "")).lower(), "", "", f"feedback-type: {feedback}")
            for r in complaint.get("complainedRecipients") or []
            if isinstance(r, dict)
        ]
        return "complaint", out, feedback
    if kind == "delivery":
        delivery = data.get("delivery") or {}
        reply = str(delivery.get("smtpResponse", ""))
        code = re.search(r"\b2\.\d{1,3}\.\d{1,3}\b", reply)
        out = [
            (str(a).lower(), "delivered", code.group(0) if code else "2.0.0", reply)
            for a in delivery.get("recipients") or []
        ]
        return "delivery", out, ""
    return "", [], ""


def ses_headers(data: dict[str, Any]) -> str:
    """The original message's headers an SES notification carries, as "Name: value" lines."""
    headers = (data.get("mail") or {}).get("headers") or []
    return "".join(
        f"{h.get('name')}: {h.get('value')}\n"
        for h in headers
        if isinstance(h, dict) and h.get("name")
    )


def jmrp_recipient(msg: Message) -> str | None:
    """The complainant of a Microsoft JMRP report (None if ``msg`` is not one)."""
    for part in msg.walk():
        if part is msg:
            continue
        value = part.get("X-HmXmrOriginalRecipient")
        if value is not None:
            return str(value).strip().lower()
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                value = inner[0].get("X-HmXmrOriginalRecipient")
                if value is not None:
                    return str(value).strip().lower()
    return None


# -- RFC 822-style field blocks ------------------------------------------------------------


def parse_fields(text: str) -> list[dict[str, str]]:
    """``Name: value`` blocks separated by blank lines (continuation lines unfolded)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] = _collapse(current[last] + " " + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            if last == "final-recipient" and last in current:
                blocks.append(current)  # a block run on without its blank line
                current = {}
            add_field(current, last, _collapse(value))
    if current:
        blocks.append(current)
    return blocks


_REPEATED = frozenset({"original-rcpt-to", "removal-recipient"})  # ARF fields that repeat


def add_field(fields: dict[str, str], name: str, value: str) -> None:
    """The first value of a field wins, except the fields that may repeat: those accumulate."""
    if name in fields and name in _REPEATED:
        fields[name] += ", " + value
    else:
        fields.setdefault(name, value)


def _collapse(text: str) -> str:
    return " ".join(str(text).split())
