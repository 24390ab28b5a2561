"""The campaign database: SQLAlchemy 2.0 typed models.

The schema changes only through Alembic migrations in ``migrations/``; these classes describe
it for queries. Times are UNIX seconds (float, UTC): one unambiguous representation that
compares the same way on SQLite and PostgreSQL and costs nothing to produce on the hot path.

``deliveries`` is the durable queue: one row per campaign x subscriber, its ``state`` following
the state machine in docs/ARCHITECTURE.md. It copies the address and domain of the subscriber so
the claim and the recorder never join.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# Delivery states (docs/ARCHITECTURE.md): the only values deliveries.state takes.
QUEUED, SENDING, DEFERRED = "queued", "sending", "deferred"
SENT, BOUNCED, COMPLAINED, EXPIRED = "sent", "bounced", "complained", "expired"
FAILED, SKIPPED, CANCELLED = "failed", "skipped", "cancelled"
PENDING_STATES = (QUEUED, SENDING, DEFERRED)
FINAL_STATES = (SENT, BOUNCED, COMPLAINED, EXPIRED, FAILED, SKIPPED, CANCELLED)
DELIVERY_STATES = PENDING_STATES + FINAL_STATES

# Campaign states.
DRAFT, SCHEDULED, RUNNING, PAUSED = "draft", "scheduled", "running", "paused"
FINISHED, MISSED, CAMPAIGN_CANCELLED = "finished", "missed", "cancelled"

SUBSCRIBED, UNSUBSCRIBED = "subscribed", "unsubscribed"


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    # sign-ups through serve's form, confirmed by a link (migration 0007)
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Subscriber(Base):
    """``email`` as given (delivered that way); ``email_key`` (``address_key``) is what every
    comparison uses, unique. A key of NULL marks a row retired by migration 0003's merge of
    addresses that only differed in case: kept for the history of its deliveries, never mailed."""

    __tablename__ = "subscribers"
    __table_args__ = (Index("uq_subscribers_email_key", "email_key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_key: Mapped[str | None] = mapped_column(String(320), nullable=True)
    domain: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(300), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Membership(Base):
    __tablename__ = "memberships"

    list_id: Mapped[int] = mapped_column(
        ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True
    )
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(20), default=SUBSCRIBED)
    updated_at: Mapped[float] = mapped_column(Float)


class Suppression(Base):
    """``email`` as given; ``email_key`` (``address_key``), unique, is what matching uses."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("uq_suppressions_email_key", "email_key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_key: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(50), default="manual")
    created_at: Mapped[float] = mapped_column(Float)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text)
    from_header: Mapped[str] = mapped_column(String(400))
    reply_to: Mapped[str | None] = mapped_column(String(400), nullable=True)
    template: Mapped[str] = mapped_column(Text)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"))
    state: Mapped[str] = mapped_column(String(20), default=DRAFT)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    scheduled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    enqueued: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # consecutive connection/TLS/policy failures, shared by a fleet (migration 0004)
    failure_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id", name="uq_delivery_campaign_subscriber"),
        # The claim: due rows of one campaign, in id order.
        Index("ix_deliveries_due", "campaign_id", "state", "next_attempt_at"),
        # Work due across campaigns (run-due, worker) and lease expiry.
        Index("ix_deliveries_state_due", "state", "next_attempt_at"),
        Index("ix_deliveries_domain", "campaign_id", "domain"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"))
    email: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    first_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_enhanced: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    mx_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tls: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The last attempt's TLS (migration 0006): version, authenticated, by what, and a
    # policy in mode testing that was not met.
    tls_version: Mapped[str | None] = mapped_column(String(16), nullable=True)
    tls_authenticated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # tls_auth: none | pkix | mta-sts | dane
    tls_auth: Mapped[str | None] = mapped_column(String(10), nullable=True)
    tls_failure: Mapped[str | None] = mapped_column(Text, nullable=True)


class Event(Base):
    """Append-only log: deferrals, bounces, complaints, unsubscribes, expiries."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_campaign", "campaign_id", "id"),
        Index("ix_events_created", "created_at"),
        Index("ix_events_kind_created", "kind", "created_at"),  # /metrics (migration 0007)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    campaign_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    subscriber_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enhanced: Mapped[str | None] = mapped_column(String(20), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    mx_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(50), default="engine")
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class Outbox(Base):
    """An event owed to one webhook endpoint (migration 0007); deleted once it answered 2xx.
    ``event_id`` is the same for every endpoint and every retry: receivers de-duplicate on it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SiteLease(Base):
    """One connection slot of a destination site ("<site>|<n>") leased to one process, so
    per-site limits hold across a fleet."""

    __tablename__ = "site_leases"

    site: Mapped[str] = mapped_column(String(500), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    lease_until: Mapped[float] = mapped_column(Float)


class Worker(Base):
    """A running engine's heartbeat: how many share the destination sites' slots."""

    __tablename__ = "workers"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    seen_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float] = mapped_column(Float)


class MtaStsPolicy(Base):
    """A fetched MTA-STS policy (RFC 8461) of one recipient domain, shared by a fleet."""

    __tablename__ = "mta_sts_policies"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(10))
    mx: Mapped[str] = mapped_column(Text)  # the patterns, one a line
    max_age: Mapped[int] = mapped_column(Integer)
    fetched_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class SiteAction(Base):
    """An adaptive backoff on a destination site (migration 0008): a suspension or a
    throttle started by a reply matching a shaping rule, in force until ``until``."""

    __tablename__ = "site_actions"
    __table_args__ = (Index("ix_site_actions_until", "until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(500))
    rule: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    connections: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    until: Mapped[float] = mapped_column(Float)
    recover_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # 0009
