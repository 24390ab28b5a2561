"""From a parsed ``Report`` to the database: which delivery it is about, and what changes.

A report changes something only when it proves which delivery it is about, with an
identifier we made and the secret verifies, most trusted first: the VERP token, our
``X-Bulkmail-Delivery`` header, the Message-ID of the returned message. Then:

- a report carrying any identifier that claims to be ours and fails verification is forged:
  it is refused outright (a ``forged_report`` event, no delivery touched, left in the mailbox
  for a person), never matched another way;
- a report with no verifiable identifier changes nothing: the addresses a report names are
  not proof (anyone can mail the bounce address naming anyone), so they never suppress;
- a proven report affects only the delivery its identifier names: other recipients listed in
  the same report are ignored (the recipient whose address is the delivery's, else the only
  or first failed one, gives the status: forwarding changes addresses).

What changes (classification is the engine's own ``reply_from_dsn`` + ``classify_reply``):

- ``Action: failed`` that classifies as bounced: the delivery becomes ``bounced`` (even if it
  was ``sent``), event ``bounced``; the address is suppressed when the verdict says so (a
  5.7.x policy rejection is not the address's fault, so it is not).
- ``Action: failed`` that classifies as temporary (mailbox full, 4.x.x): event ``soft_bounce``.
- ``Action: delayed``: event ``delayed``; nothing else.
- A complaint: the delivery becomes ``complained``, event ``complained``, address suppressed.
- An unsubscribe request: ``bulkmail.audience.unsubscribe.unsubscribe``.

Every event carries a ``dedupe_key`` made of the report's Message-ID (or a digest of its bytes)
and the delivery, so processing the same message twice records one event and changes nothing
the second time. A report that matches no delivery changes nothing and is not "processed":
its message stays in the mailbox for a person to look at.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from bulkmail.audience.addresses import InvalidAddress, address_key, normalize_address
from bulkmail.audience.unsubscribe import find_target, unsubscribe
from bulkmail.bounces.analyse import verdict_for
from bulkmail.bounces.escalate import DEFAULT_SOFT_LIMIT, SoftLimit, adds_up, escalation
from bulkmail.bounces.parse import BOUNCE, COMPLAINT, DELAYED, UNSUBSCRIBE, Recipient, Report
from bulkmail.bounces.proof import forgeries, identified
from bulkmail.bounces.proof import parse_message_id as parse_message_id
from bulkmail.compose.tokens import parse_token
from bulkmail.db.engine import Database
from bulkmail.db.engine import now as clock
from bulkmail.db.models import BOUNCED, COMPLAINED, DEFERRED, EXPIRED, SENT
from bulkmail.db.queries import add_suppressions
from bulkmail.delivery.classify import Disposition, classify_reply, reply_from_dsn
from bulkmail.delivery.taxonomy import judged_note
from bulkmail.webhooks import outbox

EVENT_BOUNCED, EVENT_SOFT, EVENT_DELAYED = "bounced", "soft_bounce", "delayed"
EVENT_COMPLAINED, EVENT_UNSUBSCRIBED = "complained", "unsubscribed"
EVENT_FORGED = "forged_report"

_FIELDS = "id, campaign_id, subscriber_id, email, state"
# The states a later report may move a delivery out of.
_BOUNCE_FROM = (SENT, DEFERRED, EXPIRED)
_COMPLAIN_FROM = (SENT, DEFERRED, EXPIRED, BOUNCED)


@dataclass(frozen=True)
class Effect:
    """What a report did (or, in a dry run, would do) to one delivery or subscriber."""

    email: str
    event: str  # the kind of event recorded
    campaign_id: int | None
    subscriber_id: int | None
    delivery_id: int | None
    matched_by: str  # verp | header | message-id | subject
    state: str | None = None  # the delivery's new state, when this changes it
    suppressed: bool = False
    detail: str = ""  # "550 5.1.1 User unknown", "feedback-type: abuse", ...
    recorded: bool = True  # False: recorded by an earlier run already, or a dry run

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Outcome:
    """The result of applying one report. ``processed``: the message may leave the mailbox."""

    kind: str
    processed: bool
    effects: tuple[Effect, ...] = ()
    note: str = ""
    forged: bool = False  # an identifier claims to be ours and does not verify


@dataclass(frozen=True)
class _Row:
    id: int
    campaign_id: int
    subscriber_id: int
    email: str
    state: str


def apply_report(
    db: Database,
    report: Report,
    secret: bytes,
    *,
    source: str,
    now: float | None = None,
    dry_run: bool = False,
    soft_limit: SoftLimit = DEFAULT_SOFT_LIMIT,
) -> Outcome:
    """Write what ``report`` means (nothing when ``dry_run``) and say what it did."""
    stamp = clock() if now is None else now
    if report.error:
        return Outcome(report.kind, False, note=f"cannot parse: {report.error}")
    if report.kind == UNSUBSCRIBE:
        return _apply_unsubscribe(db, report, secret, source, stamp, dry_run)
    if report.kind not in (BOUNCE, DELAYED, COMPLAINT):
        return Outcome(report.kind, False, note="; ".join(report.notes) or report.kind)
    recipients = _relevant(report)
    if not recipients:
        return Outcome(report.kind, False, note="no failed or delayed recipient")
    named = ", ".join(r.address for r in recipients if r.address) or "recipient not named"
    forged = forgeries(report, secret)
    if forged:
        note = f"forged: {forged[0]} does not verify; nothing changed (names {named})"
        if not dry_run:
            _record_forged(db, report, source, note, stamp)
        return Outcome(report.kind, False, note=note, forged=True)
    with db.session() as s:
        anchor = _anchor(s, report, secret)
        if anchor is None:
            return Outcome(
                report.kind,
                False,
                note="no verifiable VERP token, X-Bulkmail-Delivery or Message-ID of ours: "
                f"left for a person ({named})",
            )
        row, how = anchor
        rcpt = _about(recipients, row)
        effect = _record(s, report, rcpt, row, how, source, stamp, dry_run, soft_limit)
    ignored = [r.address for r in recipients if r is not rcpt and r.address]
    note = f"ignored (not the delivery the report proves): {', '.join(ignored)}" if ignored else ""
    return Outcome(report.kind, True, (effect,), note)


# -- finding the delivery ---------------------------------------------------------------------


def _relevant(report: Report) -> list[Recipient]:
    """The recipients a report asks us to record: failed and delayed ones (or the complainant)."""
    if report.kind == COMPLAINT:
        return list(report.recipients) or [Recipient("", "", "", "")]
    out = []
    for r in report.recipients:
        action = r.action or {"5": "failed", "4": "delayed"}.get(r.status[:1], "")
        if action in ("failed", "delayed"):
            out.append(Recipient(r.address, action, r.status, r.diagnostic))
    return out


def _about(recipients: list[Recipient], row: _Row) -> Recipient:
    """The recipient of the report that the proven delivery is: its address, else the only one
    (forwarding changes the address), else the first failure (the report is about our message)."""
    for r in recipients:
        if _normal(r.address) == address_key(row.email):  # case-insensitive (address_key)
            return r
    failed = [r for r in recipients if r.action == "failed"]
    return (failed or recipients)[0]


def _anchor(s: Any, report: Report, secret: bytes) -> tuple[_Row, str] | None:
    for how, cid, sid in identified(report, secret):
        row = _one(
            s,
            f"SELECT {_FIELDS} FROM deliveries WHERE campaign_id = :cid AND subscriber_id = :sid",
            cid=cid,
            sid=sid,
        )
        if row is not None:
            return row, how
    return None


def _record_forged(db: Database, report: Report, source: str, note: str, now: float) -> None:
    """One ``forged_report`` event per forged message (no delivery: it proves none)."""
    key = dedupe_key(EVENT_FORGED, report.reference, "forged")
    with db.session() as s:
        s.execute(
            text("""
            INSERT INTO events (kind, text, source, dedupe_key, created_at)
            VALUES (:kind, :text, :source, :key, :now)
            ON CONFLICT (dedupe_key) DO NOTHING"""),
            {
                "kind": EVENT_FORGED,
                "text": note[:1000],
                "source": source[:50],
                "key": key,
                "now": now,
            },
        )


def _one(session: Any, sql: str, **params: Any) -> _Row | None:
    row = session.execute(text(sql), params).first()
    return _Row(*row) if row is not None else None


def _normal(address: str) -> str:
    if not address:
        return ""
    try:
        return normalize_address(address).key
    except InvalidAddress:
        return address.lower()


# -- writing ----------------------------------------------------------------------------------


def _record(
    s: Any,
    report: Report,
    rcpt: Recipient,
    row: _Row,
    how: str,
    source: str,
    now: float,
    dry_run: bool,
    soft_limit: SoftLimit = DEFAULT_SOFT_LIMIT,
) -> Effect:
    """One delivery's event, state change and suppression (skipped if recorded before)."""
    event, state, suppress, code, enhanced, detail = _decide(report, rcpt)
    key = dedupe_key(event, report.reference, row.id)
    effect = Effect(
        row.email,
        event,
        row.campaign_id,
        row.subscriber_id,
        row.id,
        how,
        state,
        suppress,
        detail,
        recorded=not dry_run,
    )
    seen = s.execute(text("SELECT 1 FROM events WHERE dedupe_key = :k"), {"k": key}).first()
    if seen is not None or dry_run:
        allowed = _BOUNCE_FROM if state == BOUNCED else _COMPLAIN_FROM
        will_change = seen is None and state is not None and row.state in allowed
        return _replace(
            effect,
            state=state if will_change else None,
            suppressed=suppress and seen is None,
            recorded=False,
        )
    inserted = s.execute(
        text("""
        INSERT INTO events (kind, campaign_id, delivery_id, subscriber_id, email, code,
                            enhanced, text, source, dedupe_key, created_at)
        VALUES (:kind, :cid, :did, :sid, :email, :code, :enhanced, :text, :source, :key, :now)
        ON CONFLICT (dedupe_key) DO NOTHING"""),
        {
            "kind": event,
            "cid": row.campaign_id,
            "did": row.id,
            "sid": row.subscriber_id,
            "email": row.email,
            "code": code,
            "enhanced": enhanced,
            "text": detail[:1000],
            "source": source[:50],
            "key": key,
            "now": now,
        },
    )
    if not inserted.rowcount:  # a concurrent run recorded it a moment ago
        return _replace(effect, state=None, suppressed=False, recorded=False)
    outbox.add(
        s,
        outbox.delivery_type(event),
        [
            {
                "campaign_id": row.campaign_id,
                "delivery_id": row.id,
                "subscriber_id": row.subscriber_id,
                "email": row.email,
                "code": code,
                "enhanced": enhanced,
                "text": detail[:1000],
                "source": source[:50],
            }
        ],
        now,
    )
    changed = state is not None and _set_state(s, row.id, state, code, enhanced, detail, now)
    if not suppress and event in (EVENT_SOFT, EVENT_BOUNCED) and adds_up(code, enhanced, detail):
        escalated = escalation(s, row.email, now, soft_limit)
        if escalated is not None:  # the last of several full/inactive-mailbox failures
            add_suppressions(s, [(row.email, f"{escalated} (via {source})", "bounce")], now)
            return _replace(effect, state=state if changed else None, suppressed=True)
    if suppress:
        why = "complaint" if event == EVENT_COMPLAINED else "bounce"
        named = "complaint" if event == EVENT_COMPLAINED else bounce_class(report, rcpt)
        reason = f"{why}: {named}: {detail} (via {source})"  # the taxonomy's class says why
        add_suppressions(s, [(row.email, reason, why)], now)
    return _replace(effect, state=state if changed else None)


def bounce_class(report: Report, rcpt: Recipient) -> str:
    """The taxonomy's class of one recipient's failure (``delivery.taxonomy``)."""
    reply = reply_from_dsn(rcpt.status, rcpt.diagnostic or None)
    return str(verdict_for(report, rcpt, reply).bounce_class)


def _decide(
    report: Report, rcpt: Recipient
) -> tuple[str, str | None, bool, int | None, str | None, str]:
    """(event, new state, suppress, code, enhanced, detail) for one recipient."""
    if report.kind == COMPLAINT:
        return EVENT_COMPLAINED, COMPLAINED, True, None, None, rcpt.diagnostic or "complaint"
    reply = reply_from_dsn(rcpt.status, rcpt.diagnostic or None)
    detail = str(reply) if reply.code else (rcpt.diagnostic or rcpt.status or "no detail")
    code = reply.code or None
    if rcpt.action == "delayed":
        return EVENT_DELAYED, None, False, code, reply.enhanced, detail
    verdict = verdict_for(report, rcpt, reply)
    if reply.code and verdict.bounce_class is not classify_reply(reply).bounce_class:
        detail += judged_note(verdict.bounce_class)  # so every later reading agrees
    if verdict.disposition is Disposition.BOUNCED:
        return EVENT_BOUNCED, BOUNCED, verdict.suppress, code, reply.enhanced, detail
    return EVENT_SOFT, None, False, code, reply.enhanced, detail


def _set_state(
    s: Any,
    delivery_id: int,
    state: str,
    code: int | None,
    enhanced: str | None,
    detail: str,
    now: float,
) -> bool:
    allowed = _BOUNCE_FROM if state == BOUNCED else _COMPLAIN_FROM
    states = ", ".join(f"'{x}'" for x in allowed)
    result = s.execute(
        text(f"""
        UPDATE deliveries SET state = :state, last_code = :code, last_enhanced = :enhanced,
               last_text = :text, updated_at = :now, finished_at = COALESCE(finished_at, :now),
               lease_owner = NULL, lease_until = NULL
        WHERE id = :id AND state IN ({states})"""),
        {
            "state": state,
            "code": code,
            "enhanced": enhanced,
            "text": detail[:1000],
            "now": now,
            "id": delivery_id,
        },
    )
    return bool(result.rowcount)


def dedupe_key(event: str, reference: str, delivery_or_subscriber: object) -> str:
    """The events.dedupe_key of one report x one delivery: the same message gives the same key."""
    digest = hashlib.sha256(f"{reference}|{delivery_or_subscriber}".encode()).hexdigest()
    return f"{event}:{digest[:40]}"


def _replace(effect: Effect, **changes: Any) -> Effect:
    return Effect(**{**effect.__dict__, **changes})


# -- unsubscribe requests ---------------------------------------------------------------------


def _apply_unsubscribe(
    db: Database, report: Report, secret: bytes, source: str, now: float, dry_run: bool
) -> Outcome:
    ids = parse_token(secret, report.unsubscribe_token or "")
    if ids is None:
        return Outcome(UNSUBSCRIBE, False, note="the unsubscribe token does not verify")
    target = find_target(db, *ids)
    if target is None:
        return Outcome(UNSUBSCRIBE, False, note="no such campaign or subscriber")
    changed = False
    if not dry_run:
        key = dedupe_key(EVENT_UNSUBSCRIBED, report.reference, f"{ids[0]}-{ids[1]}")
        changed = unsubscribe(db, ids[0], ids[1], source=source, now=now, dedupe_key=key)
    detail = f"list {target.list_name}" + (
        "" if target.subscribed or changed else " (unsubscribed already)"
    )
    effect = Effect(
        target.email,
        EVENT_UNSUBSCRIBED,
        ids[0],
        ids[1],
        None,
        "subject",
        detail=detail,
        recorded=changed,
    )
    return Outcome(UNSUBSCRIBE, True, (effect,))
