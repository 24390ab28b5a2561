"""Campaigns: create, find, count, and the bridge from a stored campaign to its Composer.

A campaign is checked when it is created: its list exists, its From parses, and its template
renders for the list's members (one per distinct set of attribute keys, see
``template_check``), so a broken template fails here, not halfway through a send.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from bulkmail.audience.addresses import InvalidAddress, address_key, normalize_address
from bulkmail.audience.lists import find_list
from bulkmail.compose.mime import CampaignInfo, Composer, ComposeSettings, Recipient
from bulkmail.compose.render import template_reference
from bulkmail.config import Settings
from bulkmail.db import control
from bulkmail.db.engine import Database, now
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    DELIVERY_STATES,
    DRAFT,
    FINISHED,
    MISSED,
    PAUSED,
    RUNNING,
    SCHEDULED,
    SUBSCRIBED,
    Campaign,
    Delivery,
    MailingList,
    Membership,
    Subscriber,
)
from bulkmail.errors import InputError, NotFoundError
from bulkmail.scheduling import parse_when
from bulkmail.template_check import check_against_members

_CHECK_SECRET = b"template-check-only"


def parse_from(value: str) -> tuple[str, str]:
    """(display name, address) of a From value, or InputError."""
    name, addr = email.utils.parseaddr(value)
    if not addr or "@" not in addr:
        raise InputError(f'--from {value!r}: expected "Name <address@domain>"')
    try:
        normalize_address(addr)
    except InvalidAddress as exc:
        raise InputError(f"--from {value!r}: {exc}") from None
    return name, addr


def compose_settings(
    settings: Settings, from_header: str, secret: bytes | None = None
) -> ComposeSettings:
    """The composition settings of a campaign sent with ``settings``."""
    _, addr = email.utils.parseaddr(from_header)
    from_domain = addr.rpartition("@")[2].lower()
    return ComposeSettings(
        secret=secret if secret is not None else settings.secret(),
        unsubscribe_url=settings.unsubscribe.url,
        unsubscribe_mailto=settings.unsubscribe.mailto or None,
        return_path_domain=settings.sender.return_path_domain,
        message_id_domain=settings.sender.message_id_domain or settings.dkim.domain or from_domain,
        sender_id=settings.sender.sender_id,
    )


def campaign_info(c: Campaign, list_name: str) -> CampaignInfo:
    return CampaignInfo(
        id=c.id,
        name=c.name,
        subject=c.subject,
        from_header=c.from_header,
        list_id=c.list_id,
        list_name=list_name,
        template=c.template,
        reply_to=c.reply_to,
    )


def composer_for(
    settings: Settings, db: Database, campaign_id: int, secret: bytes | None = None
) -> Composer:
    c = get_campaign(db, campaign_id)
    with db.session() as s:
        list_name = s.scalar(select(MailingList.name).where(MailingList.id == c.list_id)) or ""
    return Composer(campaign_info(c, list_name), compose_settings(settings, c.from_header, secret))


def create_campaign(
    db: Database,
    settings: Settings,
    *,
    name: str,
    list_name: str,
    subject: str,
    from_header: str,
    template: str,
    reply_to: str | None = None,
    at: str | None = None,
) -> Campaign:
    """Validate and store a campaign; returns it (with its id)."""
    if not name.strip():
        raise InputError("--name must not be empty")
    parse_from(from_header)
    template = template_reference(template)  # ./tpl from here, found again by cron elsewhere
    scheduled_at = parse_when(at, settings.schedule.timezone) if at else None
    if reply_to:
        parse_from(reply_to)
    lst = find_list(db, list_name)
    draft = Campaign(
        id=0,
        name=name.strip(),
        subject=subject,
        from_header=from_header,
        reply_to=reply_to,
        template=template,
        list_id=lst.id,
    )
    composer = Composer(
        campaign_info(draft, lst.name), compose_settings(settings, from_header, _CHECK_SECRET)
    )
    check_against_members(db, composer, lst.id, lst.name)
    stamp = now()
    with db.session() as s:
        c = Campaign(
            name=draft.name,
            subject=subject,
            from_header=from_header,
            reply_to=reply_to,
            template=template,
            list_id=lst.id,
            state=SCHEDULED if scheduled_at else DRAFT,
            scheduled_at=scheduled_at,
            created_at=stamp,
            state_reason="",
        )
        s.add(c)
        s.flush()
        return c


def get_campaign(db: Database, campaign_id: int) -> Campaign:
    with db.session() as s:
        c = s.get(Campaign, campaign_id)
    if c is None:
        raise NotFoundError(f"no campaign with id {campaign_id} (see 'bulkmail campaigns list')")
    return c


def all_campaigns(db: Database) -> list[Campaign]:
    with db.session() as s:
        return list(s.scalars(select(Campaign).order_by(Campaign.id)).all())


def state_counts(db: Database, campaign_id: int) -> dict[str, int]:
    """Deliveries of the campaign per state (every state present, zero when none)."""
    with db.session() as s:
        rows = s.execute(
            select(Delivery.state, func.count())
            .where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.state)
        ).all()
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    counts.update({state: n for state, n in rows})
    return counts


def status(db: Database, campaign_id: int) -> dict[str, Any]:
    """The contract of ``campaigns status --json``."""
    c = get_campaign(db, campaign_id)
    counts = state_counts(db, campaign_id)
    keys = ("queued", "sending", "deferred", "sent", "bounced", "expired", "failed", "skipped")
    out: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "total": sum(counts.values()),
    }
    out.update({k: counts[k] for k in keys})
    out.update({k: counts[k] for k in ("complained", "cancelled")})
    out["reason"] = c.state_reason  # why it is paused, missed or cancelled ("" otherwise)
    return out


def find_recipient(db: Database, campaign_id: int, address: str) -> Recipient:
    """The subscriber ``address`` as a Recipient of the campaign (for preview)."""
    try:
        addr = normalize_address(address).email
    except InvalidAddress as exc:
        raise InputError(f"--to {address!r}: {exc}") from None
    with db.session() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email_key == address_key(addr)))
    if sub is None:
        raise NotFoundError(f"no subscriber {addr!r}")
    require_subscribed(db, campaign_id, sub.id, addr)
    return recipient_of(sub.id, sub.email, sub.name, sub.attributes)


def require_subscribed(db: Database, campaign_id: int, subscriber_id: int, address: str) -> None:
    """Refuse a preview for someone the campaign would never mail: not subscribed to its list."""
    with db.session() as s:
        row = s.execute(
            select(MailingList.name, Membership.status)
            .select_from(Campaign)
            .join(MailingList, MailingList.id == Campaign.list_id)
            .outerjoin(
                Membership,
                (Membership.list_id == Campaign.list_id)
                & (Membership.subscriber_id == subscriber_id),
            )
            .where(Campaign.id == campaign_id)
        ).first()
    if row is None:
        raise NotFoundError(f"no campaign with id {campaign_id} (see 'bulkmail campaigns list')")
    if row.status != SUBSCRIBED:
        raise InputError(
            f"--to {address!r}: not subscribed to list {row.name!r}, "
            f"the list of campaign {campaign_id}"
        )


def recipient_of(
    subscriber_id: int, email_addr: str, name: str | None, attributes: Mapping[str, Any] | None
) -> Recipient:
    return Recipient(
        subscriber_id=subscriber_id,
        email=email_addr,
        name=name or "",
        attributes=dict(attributes or {}),
    )


# -- control: schedule, pause, resume, cancel ------------------------------------------------


def schedule(db: Database, settings: Settings, campaign_id: int, when: str) -> Campaign:
    """Schedule a draft (or missed, or rescheduled) campaign for ``when``."""
    at = parse_when(when, settings.schedule.timezone)
    c = get_campaign(db, campaign_id)
    if c.state not in (DRAFT, SCHEDULED, MISSED):
        raise InputError(
            f"campaign {campaign_id} is {c.state}: only a draft, scheduled or "
            "missed campaign can be scheduled"
        )
    control.set_schedule(db, campaign_id, at)
    control.transition(db, campaign_id, SCHEDULED, now(), from_states=[DRAFT, SCHEDULED, MISSED])
    return get_campaign(db, campaign_id)


def unschedule(db: Database, campaign_id: int) -> Campaign:
    c = get_campaign(db, campaign_id)
    if c.state != SCHEDULED:
        raise InputError(f"campaign {campaign_id} is {c.state}, not scheduled")
    control.set_schedule(db, campaign_id, None)
    control.transition(db, campaign_id, DRAFT, now(), from_states=[SCHEDULED])
    return get_campaign(db, campaign_id)


def pause(db: Database, campaign_id: int) -> Campaign:
    """Stop all claiming for the campaign, in every process, within about a second."""
    c = get_campaign(db, campaign_id)
    if not control.transition(
        db,
        campaign_id,
        PAUSED,
        now(),
        from_states=[RUNNING, SCHEDULED],
        reason="paused by the operator",
    ):
        raise InputError(
            f"campaign {campaign_id} is {c.state}: only a running or scheduled "
            "campaign can be paused"
        )
    return get_campaign(db, campaign_id)


def resume(db: Database, campaign_id: int) -> Campaign:
    """Let a paused campaign continue exactly where it stopped (its deliveries are untouched)."""
    c = get_campaign(db, campaign_id)
    target = RUNNING if c.enqueued else (SCHEDULED if c.scheduled_at else DRAFT)
    if not control.transition(db, campaign_id, target, now(), from_states=[PAUSED]):
        raise InputError(f"campaign {campaign_id} is {c.state}, not paused")
    return get_campaign(db, campaign_id)


def cancel(db: Database, campaign_id: int) -> tuple[Campaign, int]:
    """Cancel the campaign and every delivery not yet sent; returns (campaign, cancelled)."""
    c = get_campaign(db, campaign_id)
    if c.state in (FINISHED, CAMPAIGN_CANCELLED):
        raise InputError(f"campaign {campaign_id} is already {c.state}")
    control.transition(
        db, campaign_id, CAMPAIGN_CANCELLED, now(), reason="cancelled by the operator"
    )
    return get_campaign(db, campaign_id), control.cancel_pending(db, campaign_id, now())
