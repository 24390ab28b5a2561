"""Sending safely: a test copy to one address, a dry run, and the count a confirmation needs.

``send_test_copy`` renders the campaign for a real subscriber (``--as``, else the list's first
subscribed member), marks the subject ``[TEST] ``, signs it as the engine signs, and delivers
it to any address through the configured routing (MX or relay) and transport. It writes
nothing to the database: no delivery row, no event. The copy carries subscriber id 0 in its
tokens, so its unsubscribe link and its bounces reach nobody's membership: a colleague who
clicks "unsubscribe" in a test does not unsubscribe the subscriber it was rendered for.

``dry_run`` counts, without sending, who the send would mail and who it would skip (the same
rules as enqueue: subscribed members, suppression by address key or by hash), per recipient
domain, and per destination site for the largest domains (one MX lookup each, through
``[dns]``; the rest are summed as not resolved, so a list of 100,000 domains costs 50 lookups).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from bulkmail.audience.addresses import InvalidAddress, address_key, normalize_address
from bulkmail.audience.manage import suppressed_clause
from bulkmail.campaigns import campaign_info, compose_settings, get_campaign, recipient_of
from bulkmail.compose.mime import Composer
from bulkmail.compose.render import resolve_template_dir
from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.db.models import (
    PENDING_STATES,
    SKIPPED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Delivery,
    MailingList,
    Membership,
    Subscriber,
)
from bulkmail.errors import DeliveryError, InputError, NotFoundError
from bulkmail.signing.dkim import sign_all
from bulkmail.signing.policy import require_signing

TEST_PREFIX = "[TEST] "
TEST_SUBSCRIBER_ID = 0  # tokens of a test copy name no real subscriber
SITES_RESOLVED = 50  # the largest domains whose destination site a dry run looks up


@dataclass(frozen=True)
class SentCopy:
    to: str
    rendered_as: str  # the subscriber whose name and attributes were used ("" = none)
    mx_host: str | None
    reply: str
    signed: bool


def _base_recipient(db: Database, list_id: int, as_address: str | None) -> Subscriber | None:
    with db.session() as s:
        if as_address:
            sub = s.scalar(
                select(Subscriber).where(Subscriber.email_key == address_key(as_address))
            )
            if sub is None:
                raise NotFoundError(f"--as {as_address!r}: no such subscriber")
            return sub
        return s.scalar(
            select(Subscriber)
            .join(Membership, Membership.subscriber_id == Subscriber.id)
            .where(Membership.list_id == list_id, Membership.status == SUBSCRIBED)
            .order_by(Subscriber.id)
            .limit(1)
        )


def compose_test_copy(
    settings: Settings, db: Database, campaign_id: int, to: str, as_address: str | None = None
) -> tuple[Any, str, bool]:
    """(the composed message, whom it was rendered as, whether it is signed) for ``to``."""
    from bulkmail.delivery.pipeline import load_signers

    try:
        target = normalize_address(to)
    except InvalidAddress as exc:
        raise InputError(f"--test-to {to!r}: {exc}") from None
    c = get_campaign(db, campaign_id)
    with db.session() as s:
        list_name = s.scalar(select(MailingList.name).where(MailingList.id == c.list_id)) or ""
    info = campaign_info(c, list_name)
    subject = c.subject
    if not subject.strip():
        path = resolve_template_dir(c.template, None) / "subject.txt"
        subject = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    if subject.strip():
        info = dataclasses.replace(info, subject=TEST_PREFIX + subject)
    composer = Composer(info, compose_settings(settings, c.from_header))
    base = _base_recipient(db, c.list_id, as_address)
    person = recipient_of(
        TEST_SUBSCRIBER_ID,
        target.email,
        base.name if base else "",
        base.attributes if base else {},
    )
    composed = composer.compose(person)
    signers = load_signers(settings)
    data = sign_all(signers, composed.data) if signers else composed.data
    return dataclasses.replace(composed, data=data), base.email if base else "", bool(signers)


def send_test_copy(
    settings: Settings,
    db: Database,
    campaign_id: int,
    to: str,
    as_address: str | None = None,
    unsigned: bool = False,
) -> SentCopy:
    """Deliver one test copy to ``to``; raises DeliveryError with the reply if refused."""
    require_signing(settings, unsigned=unsigned)
    composed, rendered_as, signed = compose_test_copy(settings, db, campaign_id, to, as_address)
    mx_host, reply = asyncio.run(_deliver(settings, composed))
    return SentCopy(composed.recipient, rendered_as, mx_host, reply, signed)


async def _deliver(settings: Settings, composed: Any) -> tuple[str | None, str]:
    from bulkmail.delivery.transport import Connector, Outcome
    from bulkmail.delivery.wiring import make_router, transport_settings

    domain = composed.recipient.rpartition("@")[2]
    route = await make_router(settings).route(domain)
    if route.reply is not None:
        raise DeliveryError(f"--test-to {composed.recipient}: no route to {domain}: {route.reply}")
    opened = await Connector(transport_settings(settings)).open(route.hosts)
    if isinstance(opened, Outcome):
        raise DeliveryError(f"--test-to {composed.recipient}: cannot connect: {opened.reply}")
    try:
        outcome = await opened.send(
            composed.envelope_from,
            composed.recipient,
            composed.data,
            smtputf8=composed.needs_smtputf8,
        )
    finally:
        await opened.close()
    if not 200 <= outcome.reply.code < 300:
        raise DeliveryError(
            f"--test-to {composed.recipient}: {outcome.mx_host or 'the server'} refused it "
            f"at {outcome.stage}: {outcome.reply}"
        )
    return outcome.mx_host, str(outcome.reply)


# -- the dry run ------------------------------------------------------------------------------


@dataclass
class DryRun:
    campaign_id: int
    enqueued: bool  # counts are of the campaign's pending deliveries, not of the list
    send: int = 0
    suppressed: int = 0
    unsubscribed: int = 0
    domains: dict[str, int] = field(default_factory=dict)  # to send, largest first
    sites: dict[str, int] = field(default_factory=dict)  # to send, per destination site

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def send_count(db: Database, campaign_id: int) -> int:
    """How many messages ``campaigns send`` would now send (no MX lookups)."""
    return dry_run_counts(db, campaign_id).send


def dry_run_counts(db: Database, campaign_id: int) -> DryRun:
    """The counts of a dry run, per domain; sites are left to :func:`dry_run`."""
    c = get_campaign(db, campaign_id)
    out = DryRun(campaign_id, c.enqueued)
    with db.session() as s:
        if c.enqueued:
            rows = s.execute(
                select(Delivery.domain, func.count())
                .where(Delivery.campaign_id == c.id, Delivery.state.in_(PENDING_STATES))
                .group_by(Delivery.domain)
            ).all()
            out.domains = _largest(rows)
            out.send = sum(out.domains.values())
            skipped = dict(
                s.execute(
                    select(Delivery.last_text, func.count())
                    .where(Delivery.campaign_id == c.id, Delivery.state == SKIPPED)
                    .group_by(Delivery.last_text)
                ).all()
            )
            out.unsubscribed = sum(n for why, n in skipped.items() if why == "unsubscribed")
            out.suppressed = sum(n for why, n in skipped.items() if why != "unsubscribed")
            return out
        member = (Membership.subscriber_id == Subscriber.id) & (Membership.list_id == c.list_id)
        suppressed = suppressed_clause(db)
        base = select(func.count()).select_from(Membership).join(Subscriber, member)
        out.unsubscribed = s.scalar(base.where(Membership.status == UNSUBSCRIBED)) or 0
        out.suppressed = s.scalar(base.where(Membership.status == SUBSCRIBED, suppressed)) or 0
        rows = s.execute(
            select(Subscriber.domain, func.count())
            .select_from(Membership)
            .join(Subscriber, member)
            .where(Membership.status == SUBSCRIBED, ~suppressed)
            .group_by(Subscriber.domain)
        ).all()
    out.domains = _largest(rows)
    out.send = sum(out.domains.values())
    return out


def _largest(rows: Any) -> dict[str, int]:
    return dict(sorted(((d, int(n)) for d, n in rows), key=lambda item: (-item[1], item[0])))


def dry_run(settings: Settings, db: Database, campaign_id: int) -> DryRun:
    """The counts, with the destination site of the largest domains resolved."""
    out = dry_run_counts(db, campaign_id)
    out.sites = asyncio.run(_sites(settings, out.domains))
    return out


async def _sites(settings: Settings, domains: dict[str, int]) -> dict[str, int]:
    from bulkmail.delivery.wiring import make_router

    router = make_router(settings)
    top = list(domains)[:SITES_RESOLVED]
    routes = await asyncio.gather(*(router.route(d) for d in top))
    sites: dict[str, int] = {}
    for domain, route in zip(top, routes, strict=True):
        site = route.site if route.reply is None else f"no route ({route.reply})"
        sites[site] = sites.get(site, 0) + domains[domain]
    rest = sum(n for d, n in domains.items() if d not in set(top))
    if rest:
        sites[f"not resolved ({len(domains) - len(top)} smaller domains)"] = rest
    return dict(sorted(sites.items(), key=lambda item: -item[1]))
