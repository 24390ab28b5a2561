"""The dispatcher: claimed deliveries in, recorded outcomes out, one asyncio loop per process.

Two tiers, as in KumoMTA. The database is the scheduled queue: ``claim`` takes due rows under a
lease. Each claimed row is routed (MX lookup, cached) to its destination *site* — the set of MX
hosts — and waits in that site's ready queue. A site runs up to ``connections`` lanes; a lane
holds one SMTP session, reuses it for up to ``messages_per_connection`` messages, and paces
itself with the site's rate limiter. Every attempt's reply becomes a Result (``disposition``),
buffered by the Recorder and written in batches.

Back-pressure: at most ``max_inflight`` rows are claimed and unrecorded at once, and the
domains of a site whose queue is long are left out of the next claims, so one slow site never
fills the process. Rows waiting in a queue have their lease renewed; on a graceful stop the
rows not yet attempted are released at once, so nothing waits for a lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bulkmail.config import Limits, Settings
from bulkmail.db import queries
from bulkmail.db.engine import Database
from bulkmail.db.queries import Claimed, Result
from bulkmail.delivery.classify import Reply
from bulkmail.delivery.disposition import RetryPolicy, decide, failed
from bulkmail.delivery.pipeline import MessageFactory
from bulkmail.delivery.retry import parse_duration
from bulkmail.delivery.routing import MxResolver, RelayRouter, Route
from bulkmail.delivery.throttle import RateLimiter
from bulkmail.delivery.transport import (
    Connector,
    Outcome,
    RelaySettings,
    Session,
    Timeouts,
    TlsState,
    TransportSettings,
)
from bulkmail.errors import AuthenticationError, BulkmailError

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE_LANE_SECONDS = 2.0  # a lane with nothing to send closes its session after this long
SITE_DOWN_SECONDS = 60.0  # after no host of a site accepted a connection, defer its rows this long


@dataclass
class Site:
    """One destination site's ready queue, lanes and pace."""

    name: str
    limits: Limits
    limiter: RateLimiter
    queue: asyncio.Queue[tuple[Claimed, Route] | None] = field(default_factory=asyncio.Queue)
    domains: set[str] = field(default_factory=set)
    lanes: int = 0
    down_until: float = 0.0
    down_reply: Reply | None = None


class Recorder:
    """Buffers Results and writes them in batches (a row or a time bound, whichever first)."""

    def __init__(self, engine: Engine, max_rows: int, interval: float) -> None:
        self._engine = engine
        self._max_rows = max_rows
        self._interval = interval
        self._buffer: list[Result] = []
        self._wake = asyncio.Event()
        self.counts: dict[str, int] = {}

    def add(self, result: Result) -> None:
        self._buffer.append(result)
        self.counts[result.state] = self.counts.get(result.state, 0) + 1
        if len(self._buffer) >= self._max_rows:
            self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not (stopping.is_set() and not self._buffer):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        await self._engine.in_db(queries.record, self._engine.db, batch, time.time())
        self._engine.recorded(batch)


class Engine:
    """Delivers the due deliveries of some campaigns until nothing is due (or it is stopped)."""

    def __init__(self, settings: Settings, db: Database, campaign_ids: list[int], *,
                 owner: str, share: int = 1, connector: Connector | None = None,
                 resolver: MxResolver | RelayRouter | None = None, factory: MessageFactory | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.db = db
        self.campaign_ids = campaign_ids
        self.owner = owner
        self.share = max(1, share)
        eng = settings.engine
        self.batch = eng.batch_size
        self.lease = eng.lease_seconds
        self.max_inflight = eng.batch_size * 4
        self.connector = connector or Connector(transport_settings(settings))
        self.resolver = resolver or make_router(settings)
        self.factory = factory or MessageFactory(settings, db)
        self.policy = RetryPolicy(tuple(parse_duration(i) for i in settings.retry.intervals),
                                  parse_duration(settings.retry.max_age))
        self.rng = rng or random.Random()
        self.recorder = Recorder(self, max_rows=eng.batch_size, interval=eng.flush_interval)
        self.sites: dict[str, Site] = {}
        self.inflight: dict[int, Claimed] = {}
        self.saturated: set[str] = set()
        self.stopping = asyncio.Event()
        self.fatal: BulkmailError | None = None
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._lanes: set[asyncio.Task[None]] = set()
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="bulkmail-db")

    # -- the database, off the event loop -------------------------------------------------
    async def in_db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def recorded(self, batch: list[Result]) -> None:
        for r in batch:
            self.inflight.pop(r.delivery_id, None)
        self._room.set()

    # -- the main loop ----------------------------------------------------------------------
    async def run(self, until_idle: bool = True) -> dict[str, int]:
        """Claim and deliver until nothing is due (``until_idle``) or ``stop()``; returns counts."""
        recorder = asyncio.create_task(self.recorder.run(self._drained))
        renewer = asyncio.create_task(self._renew_leases())
        try:
            await self._claim_loop(until_idle)
            for site in self.sites.values():  # wake idle lanes: nothing more is coming
                for _ in range(site.lanes):
                    site.queue.put_nowait(None)
            while self._lanes:
                await asyncio.wait(set(self._lanes))
        finally:
            self._drained.set()
            await recorder
            renewer.cancel()
            await self._release_unattempted()
            self._db_thread.shutdown(wait=True)
        if self.fatal:
            raise self.fatal
        return dict(self.recorder.counts)

    def stop(self) -> None:
        """Graceful stop: claim nothing more; lanes finish the message they are sending."""
        self.stopping.set()
        self._room.set()

    async def _claim_loop(self, until_idle: bool) -> None:
        while not self.stopping.is_set():
            room = self.max_inflight - len(self.inflight)
            if room < self.batch // 2:
                self._room.clear()
                await self._room.wait()
                continue
            rows = await self.in_db(queries.claim, self.db, self.campaign_ids, self.owner,
                                    time.time(), self.lease, min(self.batch, room),
                                    self.saturated)
            if rows:
                await self._dispatch(rows)
                continue
            if until_idle and not self.inflight:
                return
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), 0.5)

    async def _dispatch(self, rows: list[Claimed]) -> None:
        for row in rows:
            self.inflight[row.id] = row
        domains = {row.domain for row in rows}
        routes = dict(zip(domains, await asyncio.gather(
            *(self.resolver.route(d) for d in domains)), strict=True))
        for row in rows:
            route = routes[row.domain]
            if route.reply is not None:
                self.recorder.add(self._decide(row, route.reply, None, None))
                continue
            site = self._site(route)
            site.queue.put_nowait((row, route))
            if site.lanes < min(site.limits.connections, site.queue.qsize()):
                self._start_lane(site)
            self._update_saturation(site)

    def _site(self, route: Route) -> Site:
        site = self.sites.get(route.site)
        if site is None:
            relay = isinstance(self.resolver, RelayRouter)
            limits = self.settings.limits["default"] if relay else self.settings.limits_for(
                route.domain)
            if self.share > 1:
                limits = Limits(max(1, limits.connections // self.share),
                                limits.messages_per_connection, limits.rate / self.share)
            site = Site(route.site, limits, RateLimiter(limits.rate))
            self.sites[route.site] = site
        site.domains.add(route.domain)
        return site

    def _update_saturation(self, site: Site) -> None:
        cap = max(site.limits.connections * 50, int(site.limits.rate * 10))
        if site.queue.qsize() >= cap:
            self.saturated |= site.domains
        elif site.queue.qsize() < cap // 2:
            self.saturated -= site.domains

    def _start_lane(self, site: Site) -> None:
        site.lanes += 1
        task = asyncio.create_task(self._lane(site))
        self._lanes.add(task)
        task.add_done_callback(self._lanes.discard)

    # -- one lane: one session at a time to one site ----------------------------------------
    async def _lane(self, site: Site) -> None:
        session: Session | None = None
        try:
            while not self.stopping.is_set():
                try:
                    item = await asyncio.wait_for(site.queue.get(), IDLE_LANE_SECONDS)
                except TimeoutError:
                    return
                if item is None:
                    return
                row, route = item
                self._update_saturation(site)
                session = await self._attempt(site, session, row, route)
        except AuthenticationError as exc:
            self.fatal = exc
            self.stop()
        except Exception:  # a bug must not strand the rows: log, they are released at stop
            log.exception("lane for site %s failed", site.name)
            self.stop()
        finally:
            site.lanes -= 1
            if session is not None:
                await session.close()

    async def _attempt(self, site: Site, session: Session | None, row: Claimed,
                       route: Route) -> Session | None:
        """Send one claimed delivery; returns the session to keep using (or None)."""
        if site.down_until > time.monotonic() and site.down_reply is not None:
            self.recorder.add(self._decide(row, site.down_reply, None, None))
            return session
        try:
            message = self.factory.build(row)
        except BulkmailError as exc:
            self.recorder.add(failed(row, str(exc)))
            return session
        if session is not None and (not session.alive()
                                    or session.messages_sent >= site.limits.messages_per_connection):
            await session.close()
            session = None
        if session is None:
            opened = await self.connector.open(self.resolver.reshuffle(route.hosts))
            if isinstance(opened, Outcome):
                site.down_until = time.monotonic() + SITE_DOWN_SECONDS
                site.down_reply = opened.reply
                self.recorder.add(self._decide(row, opened.reply, opened.mx_host, opened.tls))
                return None
            session = opened
            site.down_until, site.down_reply = 0.0, None
        wait = site.limiter.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        outcome = await session.send(message.envelope_from, message.recipient, message.data,
                                     smtputf8=message.smtputf8)
        self.recorder.add(self._decide(row, outcome.reply, outcome.mx_host or session.mx_host,
                                       outcome.tls or session.tls))
        return session if session.alive() else None

    def _decide(self, row: Claimed, reply: Reply, mx_host: str | None,
                tls: TlsState | None) -> Result:
        return decide(row, reply, mx_host=mx_host, tls=tls_label(tls), now=time.time(),
                      policy=self.policy, rng=self.rng)

    # -- leases -----------------------------------------------------------------------------
    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            await self.in_db(queries.renew, self.db, self.owner, list(self.inflight),
                             time.time(), self.lease)

    async def _release_unattempted(self) -> None:
        """Give back rows that were claimed but never attempted (stop, or a fatal error)."""
        for site in self.sites.values():
            _drain(site.queue)
        ids = list(self.inflight)
        if ids:
            await asyncio.get_running_loop().run_in_executor(
                None, queries.release, self.db, self.owner, ids, time.time())


def _drain(queue: asyncio.Queue[tuple[Claimed, Route] | None]) -> None:
    while not queue.empty():
        queue.get_nowait()


def tls_label(tls: TlsState | None) -> str | None:
    """How a delivery's TLS is stored: None (no connection), "none", or "TLSv1.3 verified"."""
    if tls is None:
        return None
    if not tls.used:
        return "none"
    return f"{tls.version or 'TLS'} {'verified' if tls.verified else 'unverified'}"


def transport_settings(settings: Settings) -> TransportSettings:
    """The SMTP transport's settings from the config (the relay password from the environment)."""
    t, r = settings.timeouts, settings.relay
    relay = None
    if settings.sender.mode == "relay":
        relay = RelaySettings(host=r.host, port=r.port, security=r.security,
                              username=r.username or None,
                              password=settings.relay_password() or None,
                              ca_file=str(settings.path(r.ca_file)) if r.ca_file else None)
    return TransportSettings(
        helo=settings.sender.helo, port=settings.sender.port, tls=settings.sender.tls,
        timeouts=Timeouts(connect=t.connect, greeting=t.greeting, mail=t.mail, rcpt=t.rcpt,
                          data_init=t.data_init, data_block=t.data_block, data_end=t.data_end,
                          session=t.session),
        relay=relay,
        ca_file=str(settings.path(settings.sender.ca_file)) if settings.sender.ca_file else None,
    )


def make_router(settings: Settings) -> MxResolver | RelayRouter:
    """MX routing, or in relay mode one route to the smart host for every domain."""
    if settings.sender.mode == "relay":
        return RelayRouter(settings.relay.host, settings.relay.port)
    return MxResolver(settings.dns.nameservers, settings.dns.port, settings.dns.timeout,
                      static_routes=settings.routes)
