"""What proves a report is about our mail: identifiers we made, checked with the secret (pure).

A VERP token (``bounces+TOKEN@``), our ``X-Bulkmail-Delivery`` header and our Message-ID
(``compose.tokens.message_id``) are HMAC-derived: only the holder of the secret can make one
that verifies. One that has our shape and does not verify is a forgery.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bulkmail.bounces.parse import Report
from bulkmail.compose.tokens import message_id, parse_token

_MESSAGE_ID_RE = re.compile(r"<([0-9a-z]{1,13})\.([0-9a-z]{1,13})\.([a-z2-7]{16})@([^<>@\s]+)>")


def forgeries(report: Report, secret: bytes) -> list[str]:
    """The identifiers in ``report`` that claim to be ours and are not (HMAC fails).

    Any one makes the whole report forged: a real report of ours carries only identifiers we
    made, and a report that cannot be proven is never matched another way.
    """
    bad = [f"VERP token {t}" for t in report.verp_tokens if parse_token(secret, t) is None]
    bad += [
        f"X-Bulkmail-Delivery {t}" for t in report.header_tokens if parse_token(secret, t) is None
    ]
    bad += [
        f"Message-ID {m}"
        for m in report.message_ids
        if _MESSAGE_ID_RE.fullmatch(m.strip().lower()) and parse_message_id(secret, m) is None
    ]
    return bad


def identified(report: Report, secret: bytes) -> Iterator[tuple[str, int, int]]:
    """(how, campaign id, subscriber id) for every identifier in ``report`` that verifies."""
    for how, tokens in (("verp", report.verp_tokens), ("header", report.header_tokens)):
        for token in tokens:
            ids = parse_token(secret, token)
            if ids is not None:
                yield how, ids[0], ids[1]
    for mid in report.message_ids:
        ids = parse_message_id(secret, mid)
        if ids is not None:
            yield "message-id", ids[0], ids[1]


def parse_message_id(secret: bytes, value: str) -> tuple[int, int] | None:
    """(campaign id, subscriber id) from a Message-ID that ``compose.tokens.message_id`` made."""
    match = _MESSAGE_ID_RE.fullmatch(value.strip().lower())
    if match is None:
        return None
    cid, sid = int(match[1], 36), int(match[2], 36)
    if max(cid, sid) > 2**63 - 1:
        return None
    expected = message_id(secret, cid, sid, match[4]).lower()
    return (cid, sid) if expected == value.strip().lower() else None
