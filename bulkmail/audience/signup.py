"""Double opt-in sign-ups: a signed token in the confirmation link, then the membership.

Nothing is stored when someone fills in the form: the confirmation link carries the list,
the address, the name and the time, signed with ``BULKMAIL_SECRET`` (HMAC-SHA256 under its
own ``signup:`` prefix, so no other token of ours can pass for one). A bot that posts
thousands of addresses fills no table; an address is added only when its owner follows the
link and presses the button (a POST: link scanners that fetch every URL do not confirm).
The token expires after ``[signup] confirm_within``; confirming twice changes nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from bulkmail.audience.addresses import Address
from bulkmail.db.engine import Database
from bulkmail.db.models import SUBSCRIBED, MailingList, Subscriber
from bulkmail.webhooks import outbox

EVENT_KIND = "subscribed"
_PREFIX = b"signup:"


@dataclass(frozen=True)
class SignupRequest:
    list_id: int
    email: str
    name: str
    issued_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text_: str) -> bytes:
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _PREFIX + payload.encode(), hashlib.sha256).digest()[:18])


def make_token(secret: bytes, request: SignupRequest) -> str:
    """The confirmation token for ``request`` (pure)."""
    body = [request.list_id, request.email, request.name, request.issued_at]
    payload = _b64(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def read_token(secret: bytes, token: str, now: float, max_age: float) -> SignupRequest | None:
    """The request a token carries; None if forged, truncated, malformed or expired (pure)."""
    payload, _, mac = token.partition(".")
    if not payload or not hmac.compare_digest(_mac(secret, payload), mac):
        return None
    try:
        list_id, email, name, issued = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    if not (isinstance(list_id, int) and isinstance(email, str) and isinstance(issued, int)):
        return None
    if not issued <= now + 60 or now - issued > max_age:
        return None
    return SignupRequest(list_id, email, str(name), issued)


def signup_list(db: Database, name: str) -> MailingList | None:
    """The list called ``name`` if it takes sign-ups (created with ``--double-opt-in``)."""
    with db.session() as s:
        lst = s.scalar(select(MailingList).where(MailingList.name == name))
    return lst if lst is not None and lst.double_opt_in else None


@dataclass(frozen=True)
class Confirmed:
    list_name: str
    email: str
    changed: bool  # the address became a subscribed member by this confirmation


def confirm(db: Database, request: SignupRequest, address: Address, now: float) -> Confirmed | None:
    """Add the confirmed address to the list (subscribed); None if the list is gone or no
    longer takes sign-ups. An unsubscribed member who confirms again is subscribed again:
    they asked. A suppressed address stays suppressed (it is a member, and is not mailed)."""
    for attempt in (1, 2):  # a concurrent confirmation may insert the subscriber first
        try:
            return _confirm(db, request, address, now)
        except IntegrityError:
            if attempt == 2:
                raise
    return None


def _confirm(
    db: Database, request: SignupRequest, address: Address, now: float
) -> Confirmed | None:
    with db.session() as s:
        lst = s.get(MailingList, request.list_id)
        if lst is None or not lst.double_opt_in:
            return None
        sub = s.scalar(select(Subscriber).where(Subscriber.email_key == address.key))
        if sub is None:
            sub = Subscriber(
                email=address.email,
                email_key=address.key,
                domain=address.domain,
                name=request.name[:300],
                attributes={},
                created_at=now,
                updated_at=now,
            )
            s.add(sub)
            s.flush()
        status = s.execute(
            text("SELECT status FROM memberships WHERE list_id = :l AND subscriber_id = :s"),
            {"l": lst.id, "s": sub.id},
        ).scalar()
        if status == SUBSCRIBED:
            return Confirmed(lst.name, sub.email, False)
        if status is None:
            s.execute(
                text("""INSERT INTO memberships (list_id, subscriber_id, status, updated_at)
                        VALUES (:l, :s, :st, :now)"""),
                {"l": lst.id, "s": sub.id, "st": SUBSCRIBED, "now": now},
            )
        else:
            s.execute(
                text("""UPDATE memberships SET status = :st, updated_at = :now
                        WHERE list_id = :l AND subscriber_id = :s"""),
                {"l": lst.id, "s": sub.id, "st": SUBSCRIBED, "now": now},
            )
        s.execute(
            text("""INSERT INTO events (kind, subscriber_id, email, text, source, created_at)
                    VALUES (:kind, :sid, :email, :text, 'signup', :now)"""),
            {"kind": EVENT_KIND, "sid": sub.id, "email": sub.email, "text": lst.name, "now": now},
        )
        item = {"subscriber_id": sub.id, "email": sub.email, "list_id": lst.id, "list": lst.name}
        outbox.add(s, "subscriber.subscribed", [item], now)
        return Confirmed(lst.name, sub.email, True)
