"""The dispatcher: claimed deliveries in, recorded outcomes out, one asyncio loop per process.

Two tiers, as in KumoMTA. The database is the scheduled queue: ``claim`` takes due rows under a
lease. Each claimed row is routed (MX lookup, cached) to its destination site (``sites.py``)
and waits in that site's ready queue. A site runs up to ``connections`` lanes; a lane holds one
SMTP session, reuses it for up to ``messages_per_connection`` messages, and paces itself with
the site's rate limiter. Every attempt's reply becomes a Result (``disposition``), written in
batches by the Recorder.

Back-pressure: at most ``max_inflight`` rows are claimed and unrecorded at once, and the
domains of a site whose queue is long, or whose lease another process holds, are left out of
the next claims. A monitor task renews leases (rows and sites), notices paused or cancelled
campaigns within a second, and gives back rows this process will not attempt. On a graceful
stop the rows not yet attempted are released at once, so nothing waits for a lease to expire.

Crashes and stalls (``owners``, ``leases``): at start and every few seconds the engine reclaims
the leases of dead engines (gone on this host, or silent for 30 s), so a ``kill -9`` and a
restart resume at once. A renewal answers which rows are still ours; a lost row is dropped,
never sent, and a message goes out only on a row the engine is sure it still holds.
Consecutive site failures are counted in the database (``autopause``), shared by a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bulkmail.bounces.brakes import Watch, from_settings
from bulkmail.bounces.escalate import from_settings as soft_limit_from
from bulkmail.config import Settings
from bulkmail.db import control, queries
from bulkmail.db.engine import Database
from bulkmail.db.models import PAUSED, RUNNING
from bulkmail.db.queries import Claimed, Result
from bulkmail.delivery import owners
from bulkmail.delivery.autopause import LocalStreak, pause_reason, streak_changes
from bulkmail.delivery.classify import Reply
from bulkmail.delivery.disposition import RetryPolicy, decide, failed
from bulkmail.delivery.leases import LeaseKeeper
from bulkmail.delivery.pipeline import CampaignUnusable, MessageFactory
from bulkmail.delivery.recorder import Recorder
from bulkmail.delivery.retry import parse_duration
from bulkmail.delivery.routing import MxResolver, RelayRouter, Route
from bulkmail.delivery.sites import IDLE_RELEASE_SECONDS, Site, drain
from bulkmail.delivery.throttle import RateLimiter
from bulkmail.delivery.transport import Connector, Outcome, Session, TlsState
from bulkmail.delivery.wiring import make_router, tls_label, transport_settings
from bulkmail.errors import BulkmailError, RelayError
from bulkmail.shaping import store as shaping_store
from bulkmail.shaping.backoff import Action
from bulkmail.shaping.shaper import Shaper, holds_by_expiry

__all__ = ["Engine", "make_router", "tls_label", "transport_settings"]

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE_LANE_SECONDS = 2.0  # a lane with nothing to send closes its session after this long
SITE_DOWN_SECONDS = 60.0  # after no host of a site accepted a connection, defer its rows this long
MONITOR_SECONDS = 1.0
HEARTBEAT_WINDOW = 5.0  # an engine not heard from for this long no longer counts


class Engine:
    """Delivers the due deliveries of some campaigns (None: every running campaign)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        campaign_ids: list[int] | None,
        *,
        owner: str,
        connector: Connector | None = None,
        resolver: MxResolver | RelayRouter | None = None,
        factory: MessageFactory | None = None,
        rng: random.Random | None = None,
        peers_hint: int = 1,
    ) -> None:
        self.settings = settings
        self.db = db
        self.scope = campaign_ids
        self.active: list[int] = list(campaign_ids or [])
        self.owner = owner
        eng = settings.engine
        self.batch = eng.batch_size
        self.lease = eng.lease_seconds
        self.site_lease = eng.site_lease_seconds
        self.max_inflight = eng.batch_size * 4
        self.connector = connector or Connector(transport_settings(settings))
        self.resolver = resolver or make_router(settings, db)
        self.relay = isinstance(self.resolver, RelayRouter)
        self.factory = factory or MessageFactory(settings, db)
        self.policy = RetryPolicy(
            tuple(parse_duration(i) for i in settings.retry.intervals),
            parse_duration(settings.retry.max_age),
        )
        self.rng = rng or random.Random()
        self.recorder = Recorder(
            db, self.in_db, self._written, eng.batch_size, eng.flush_interval, owner=owner
        )
        self.recorder.soft_limit = soft_limit_from(settings)  # [bounces] soft_bounce_*
        self.sites: dict[str, Site] = {}
        self.inflight: dict[int, Claimed] = {}
        self.excluded: set[str] = set()  # domains of saturated or foreign sites
        self.live = 1  # engines alive in the fleet (heartbeats), for fair shares of slots
        self.peers_hint = peers_hint  # engines started together with this one (--workers)
        self._started = time.monotonic()
        self.streak = LocalStreak(settings.schedule.pause_after_failures)
        self.stopping = asyncio.Event()
        self.fatal: BulkmailError | None = None
        self._give_back: list[int] = []
        self._pausing: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._lanes: set[asyncio.Task[None]] = set()
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="bulkmail-db")
        self.leases = LeaseKeeper(db, owner, self.lease, self.in_db)
        self.brakes = Watch(from_settings(settings))  # list-health brakes, mid-send
        self.shaper = Shaper(settings)  # provider sites and limits, adaptive backoff
        self._held: list[tuple[int, float]] = []  # rows of suspended sites, due when it ends

    async def in_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a database call on this engine's one DB thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    # -- the main loop ----------------------------------------------------------------------
    async def run(self, until_idle: bool = True, deadline: float | None = None) -> dict[str, int]:
        """Claim and deliver until nothing is due (``until_idle``), ``deadline`` (monotonic)
        passes, or ``stop()``; returns the outcome counts of this run."""
        self._recorder_task = asyncio.create_task(self.recorder.run(self._drained))
        monitor = asyncio.create_task(self._monitor(deadline))
        try:
            await self._heartbeat()
            await self.leases.reap()
            await self._refresh_campaigns()
            await self._shape()
            await self._claim_loop(until_idle)
        except BaseException:
            self.stop()  # whatever broke, lanes finish what they are sending and it is recorded
            raise
        finally:
            await self._wind_down(monitor)
        if self.fatal:
            raise self.fatal
        return dict(self.recorder.counts)

    async def _wind_down(self, monitor: asyncio.Task[None]) -> None:
        """Lanes finish their message, results are written, unattempted rows go back."""
        for site in self.sites.values():  # wake idle lanes: nothing more is coming
            for _ in range(site.lanes):
                site.queue.put_nowait(None)
        while self._lanes:
            await asyncio.wait(set(self._lanes))
        self._drained.set()
        try:
            await self._recorder_task
        except BulkmailError as exc:  # the database stayed unwritable: rows keep their leases
            self.fatal = self.fatal or exc
        while self._pausing:  # failure counts of the last batches, and the pauses they cause
            await asyncio.wait(set(self._pausing))
        monitor.cancel()
        try:
            await self._shape(hold_only=True)
            await self._give_everything_back()
        except BulkmailError as exc:
            self.fatal = self.fatal or exc
        self._db_thread.shutdown(wait=True)

    def stop(self) -> None:
        """Graceful stop: claim nothing more; lanes finish the message they are sending."""
        self.stopping.set()
        self._room.set()

    async def _claim_loop(self, until_idle: bool) -> None:
        while not self.stopping.is_set():
            if self._recorder_task.done():  # it gave up writing: claiming more would pile up
                self.stop()
                break
            room = self.max_inflight - len(self.inflight)
            if room < self.batch // 2:
                self._room.clear()
                await self._room.wait()
                continue
            now = time.time()
            rows = await self.in_db(
                queries.claim,
                self.db,
                self.active,
                self.owner,
                now,
                self.lease,
                min(self.batch, room),
                self.excluded,
                now - owners.STALE_HEARTBEAT_SECONDS,  # live holders keep lapsed rows
            )
            if rows:
                self.leases.claimed((r.id for r in rows), now)
                if await self._dispatch(rows) == len(rows):
                    # All of it belongs to sites whose slots other engines hold: let them
                    # work, ask again shortly (the rows are due again at once).
                    await asyncio.sleep(0.2)
                continue
            if until_idle and not self.inflight:
                return
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), 0.5)

    async def _dispatch(self, rows: list[Claimed]) -> int:
        """Route and queue claimed rows; returns how many were given back unattempted."""
        for row in rows:
            self.inflight[row.id] = row
        domains = {row.domain for row in rows}
        routes = dict(
            zip(
                domains,
                await asyncio.gather(*(self.resolver.route(d) for d in domains)),
                strict=True,
            )
        )
        routes = {d: self.shaper.route(r) for d, r in routes.items()}  # provider sites
        back = []
        touched: dict[str, Site] = {}
        for row in rows:
            route = routes[row.domain]
            if route.reply is not None:
                self._record(self._decide(row, route.reply, None, None))
                continue
            site = self._site(route)
            if not site.slots and not site.may_ask(time.monotonic()):
                back.append(row.id)  # foreign for now: another process holds its slots
                continue
            site.queue.put_nowait((row, route))
            touched[site.name] = site
        for site in touched.values():
            await self._grow(site)
            if not site.slots:
                back.extend(row.id for row in drain(site.queue))
            self._start_lanes(site)
            self._update_exclusions(site)
        if back:
            await self._release(back)
        return len(back)

    def _site(self, route: Route) -> Site:
        site = self.sites.get(route.site)
        if site is None:
            limits = (
                self.settings.limits["default"]
                if self.relay
                else self.shaper.limits_for(route, time.time())
            )
            site = Site(route.site, limits, RateLimiter(limits.rate))
            self.sites[route.site] = site
        site.domains.add(route.domain)
        return site

    async def _grow(self, site: Site) -> None:
        """Ask for more of the site's slots when its queue could use them (and it is time)."""
        want = site.wanted(self.live)
        if len(site.slots) >= want or not site.may_ask(time.monotonic()):
            return
        site.asked_at = time.monotonic()
        held = await self.in_db(
            control.acquire_slots,
            self.db,
            site.name,
            site.limits.connections,
            self.owner,
            want,
            time.time(),
            self.site_lease,
            time.time() - owners.STALE_HEARTBEAT_SECONDS,
        )
        site.set_slots(held)
        if len(site.slots) >= want:
            site.asked_at = -1e9  # satisfied: ask again at once when more is needed

    def _update_exclusions(self, site: Site) -> None:
        cap = site.saturation_cap()
        if site.queue.qsize() >= cap:
            self.excluded |= site.domains
        elif site.queue.qsize() < cap // 2:
            self.excluded -= site.domains

    def _start_lanes(self, site: Site) -> None:
        while site.free and site.lanes < site.queue.qsize():
            key = site.free.pop()
            site.lanes += 1
            task = asyncio.create_task(self._lane(site, key))
            self._lanes.add(task)
            task.add_done_callback(self._lanes.discard)

    # -- one lane: one session at a time to one site ----------------------------------------
    async def _lane(self, site: Site, slot: str) -> None:
        session: Session | None = None
        try:
            while not self.stopping.is_set() and slot in site.slots:
                if len(site.slots) > site.fair_share(self.live):
                    return  # more engines now: give this slot back to the fleet
                try:
                    item = await asyncio.wait_for(site.queue.get(), IDLE_LANE_SECONDS)
                except TimeoutError:
                    return
                if item is None:
                    return
                row, route = item
                self._update_exclusions(site)
                if self.inflight.get(row.id) is not row:
                    continue  # lost to another engine (renewal): not ours to send or give back
                if slot not in site.slots or row.campaign_id not in self.active:
                    self._give_back.append(row.id)  # slot lost, or campaign paused/cancelled
                    continue
                session = await self._attempt(site, session, row, route)
        except RelayError as exc:  # certificate, password or credentials: stop the send
            self.fatal = exc
            self.stop()
        except Exception:  # a bug must not strand the rows: log; they are released at stop
            log.exception("lane for site %s failed", site.name)
            self.stop()
        finally:
            site.lanes -= 1
            if slot in site.slots:
                site.free.append(slot)
            if session is not None:
                await session.close()

    async def _attempt(
        self, site: Site, session: Session | None, row: Claimed, route: Route
    ) -> Session | None:
        """Send one claimed delivery; returns the session to keep using (or None)."""
        if (until := self.shaper.suspended_until(site.name, time.time())) is not None:
            self._held.append((row.id, until))  # the site asked us to wait: no retry step
            return session
        if site.down_until > time.monotonic() and site.down_reply is not None:
            # No new attempt, but a site failure all the same: it counts towards auto-pause.
            self._record(self._decide(row, site.down_reply, None, None))
            return session
        try:
            message = self.factory.build(row)
        except CampaignUnusable:  # the factory paused the campaign: the row waits for resume
            self._give_back.append(row.id)
            return session
        except BulkmailError as exc:
            self._record(failed(row, str(exc)))
            return session
        if session is not None and (
            not session.alive() or session.messages_sent >= site.limits.messages_per_connection
        ):
            await session.close()
            session = None
        if session is None:
            opened = await self.connector.open(self.resolver.reshuffle(route.hosts))
            if isinstance(opened, Outcome):
                if self._backoff(site, row, route, opened.reply, opened.mx_host):
                    return None
                site.down_until = time.monotonic() + SITE_DOWN_SECONDS
                site.down_reply = opened.reply
                self._record(self._decide(row, opened.reply, opened.mx_host, opened.tls))
                return None
            session = opened
            site.down_until, site.down_reply = 0.0, None
        wait = site.limiter.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        if not await self._still_ours(row):
            return session
        outcome = await session.send(
            message.envelope_from, message.recipient, message.data, smtputf8=message.smtputf8
        )
        if self._backoff(site, row, route, outcome.reply, outcome.mx_host or session.mx_host):
            return session if session.alive() else None
        self._record(
            self._decide(
                row,
                outcome.reply,
                outcome.mx_host or session.mx_host,
                outcome.tls or session.tls,
                outcome.stage,  # a bare "User unknown" after DATA is a filter's (taxonomy)
            )
        )
        return session if session.alive() else None

    def _backoff(
        self, site: Site, row: Claimed, route: Route, reply: Reply, mx_host: str | None
    ) -> bool:
        """A reply matching a shaping rule (``bulkmail.shaping``) starts its action on the
        site; the row is not charged a retry step: held until a suspension ends, or queued
        again under a throttle. False: no rule matched, record the reply as usual."""
        now = time.time()
        action, new = self.shaper.observe(site.name, reply, now)
        if action is None or (action.kind == "throttle" and not new):
            return False  # a throttle already in force: this reply is an ordinary deferral
        if new:
            log.warning(
                "site %s: rule %s: %s until %s",
                site.name,
                action.rule,
                action.kind,
                time.strftime("%H:%M:%S", time.gmtime(action.until)),
            )
            self._spawn(self._note_backoff(action, reply, row, mx_host, now))
        self.shaper.retune(site, now)
        if action.kind == "suspend":
            self._held.append((row.id, action.until))
        else:
            site.queue.put_nowait((row, route))
        return True

    async def _note_backoff(
        self, action: Action, reply: Reply, row: Claimed, mx_host: str | None, now: float
    ) -> None:
        try:
            await self.in_db(
                lambda: shaping_store.record(
                    self.db,
                    action,
                    reply,
                    owner=self.owner,
                    now=now,
                    campaign_id=row.campaign_id,
                    delivery_id=row.id,
                    mx_host=mx_host,
                )
            )
        except BulkmailError as exc:  # it still holds here; the fleet learns at the next one
            log.warning("could not record a backoff (%s)", exc)

    async def _shape(self, hold_only: bool = False) -> None:
        """Rows of suspended sites go back due when the suspension ends; the fleet's
        backoffs are read and every site's limits follow them."""
        held, self._held = self._held, []
        for until, ids in holds_by_expiry(held).items():
            await self.in_db(shaping_store.hold, self.db, self.owner, ids, until, time.time())
            self._drop(ids)
        if hold_only:
            return
        now = time.time()
        self.shaper.adopt(await self.in_db(shaping_store.in_force, self.db, now), now)
        for site in self.sites.values():
            self.shaper.retune(site, now)

    def _decide(
        self,
        row: Claimed,
        reply: Reply,
        mx_host: str | None,
        tls: TlsState | None,
        stage: str | None = None,
    ) -> Result:
        return decide(
            row,
            reply,
            mx_host=mx_host,
            tls=tls_label(tls),
            now=time.time(),
            policy=self.policy,
            rng=self.rng,
            tls_state=tls,
            stage=stage,
        )

    async def _still_ours(self, row: Claimed) -> bool:
        """Right before sending: is the row still ours (``leases``)? A lost row is dropped,
        one the database cannot vouch for goes back; neither is sent."""
        if self.inflight.get(row.id) is not row:
            return False
        ours = await self.leases.confirm(row.id)
        if ours is None:
            self._give_back.append(row.id)
        elif not ours:
            self._drop([row.id])
        return bool(ours)

    def _drop(self, ids: list[int]) -> None:
        """Forget rows: written, given back, or now another engine's (a result we still
        hold for one of those is written all the same)."""
        for i in ids:
            self.inflight.pop(i, None)
        self.leases.book.forget(ids)
        self._room.set()

    def _record(self, result: Result) -> None:
        """Hand a result to the recorder; this engine's own failure streak pauses at once."""
        self.recorder.add(result)
        if count := self.streak.add(result):
            self._pause_now(result.campaign_id, count)

    def _written(self, batch: list[Result]) -> None:
        self._drop([r.delivery_id for r in batch])
        changes = streak_changes(batch)
        if changes and self.settings.schedule.pause_after_failures:
            self._spawn(self._count_failures(changes))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run a failure count or a pause beside the lanes (awaited at wind-down)."""
        task = asyncio.get_running_loop().create_task(job)
        self._pausing.add(task)
        task.add_done_callback(self._pausing.discard)

    def _pause_now(self, cid: int, count: int) -> None:
        """Stop sending the campaign now (lanes give back its rows) and pause it."""
        if cid in self.active:
            self.active = [c for c in self.active if c != cid]
            self._spawn(self._pause(cid, count))

    async def _count_failures(self, changes: dict[int, tuple[bool, int]]) -> None:
        """Move the shared failure streaks; pause a campaign that reached the limit."""
        try:
            streaks = await self.in_db(control.count_failures, self.db, changes)
        except BulkmailError as exc:  # counting is advisory: sending goes on
            log.warning("could not count failures (%s)", exc)
            return
        for cid, streak in streaks.items():
            if streak >= self.settings.schedule.pause_after_failures:
                self._pause_now(cid, streak)

    # -- the monitor: campaigns, leases, give-backs -----------------------------------------
    async def _monitor(self, deadline: float | None) -> None:
        """Every second: deadline, heartbeat, campaign states, give-backs, leases, slots.
        A failing tick is logged and the next one tried: leases must keep being renewed."""
        self._last_renew = time.monotonic()
        while True:
            await asyncio.sleep(MONITOR_SECONDS)
            try:
                await self._tick(deadline)
            except Exception:  # noqa: BLE001 - e.g. the database briefly away
                log.exception("engine monitor tick failed; trying again")

    async def _tick(self, deadline: float | None) -> None:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            self.stop()
        await self._heartbeat()
        if self.leases.reap_due():
            await self.leases.reap()
        await self._refresh_campaigns()
        if self.brakes.due(now):  # list-health brakes (bounces.brakes): a stale list stops
            braked = await self.in_db(self.brakes.check, self.db, self.active)
            self.active = [c for c in self.active if c not in braked]
        if self._give_back:
            ids, self._give_back = self._give_back, []
            await self._release(ids)
        await self._shape()
        if now - self._last_renew >= min(self.lease, self.site_lease) / 3:
            self._last_renew = now
            await self._renew(now)
        for site in list(self.sites.values()):
            await self._rebalance(site, now)

    async def _heartbeat(self) -> None:
        at = time.time()
        live = await self.in_db(control.heartbeat, self.db, self.owner, at, HEARTBEAT_WINDOW)
        if self.leases.book.beat(at):  # after a gap: renew (and learn what was lost) now
            self._last_renew = -1e9
        if time.monotonic() - self._started < HEARTBEAT_WINDOW:
            live = max(live, self.peers_hint)  # siblings started with us may not have beaten yet
        self.live = live

    async def _rebalance(self, site: Site, now: float) -> None:
        """Give back slots no lane uses when idle or above the fair share; ask for more when
        the queue could use them; start lanes on new slots."""
        spare = len(site.slots) - site.fair_share(self.live)
        if site.idle_for(now) > IDLE_RELEASE_SECONDS:
            spare = len(site.free)
        give = site.free[: max(0, min(spare, len(site.free)))]
        if give:
            site.free = site.free[len(give) :]
            site.slots -= set(give)
            site.set_slots(site.slots)
            await self.in_db(control.release_slots, self.db, self.owner, give)
        if site.queue.qsize():
            await self._grow(site)
            self._start_lanes(site)
        self._update_exclusions(site)

    async def _refresh_campaigns(self) -> None:
        active = await self.in_db(control.campaigns_in, self.db, [RUNNING], self.scope)
        for cid in set(active) - set(self.active):
            self.streak.counts[cid] = 0  # resumed: a fresh count
        self.active = active

    async def _pause(self, cid: int, count: int) -> None:
        reason = pause_reason(count)
        if await self.in_db(
            lambda: control.transition(
                self.db, cid, PAUSED, time.time(), from_states=[RUNNING], reason=reason
            )
        ):
            log.warning("campaign %s %s", cid, reason)

    async def _renew(self, now: float) -> None:
        """Renew rows and slots; rows another engine took meanwhile are dropped, not sent."""
        if lost := [i for i in await self.leases.renew(list(self.inflight)) if i in self.inflight]:
            log.warning("lost the leases of %d deliveries to another engine: dropped", len(lost))
            self._drop(lost)
        kept = await self.in_db(
            control.renew_slots, self.db, self.owner, time.time(), self.site_lease
        )
        for site in self.sites.values():
            if site.slots - kept:
                log.warning("lost slot(s) of site %s to another process", site.name)
                site.set_slots(site.slots & kept)

    async def _release(self, ids: list[int]) -> None:
        await self.in_db(queries.release, self.db, self.owner, ids, time.time())
        self._drop(ids)

    async def _give_everything_back(self) -> None:
        """Rows claimed but never attempted, and the sites we hold, go back to the fleet."""
        for site in self.sites.values():
            drain(site.queue)
        loop = asyncio.get_running_loop()
        if self.inflight:
            await loop.run_in_executor(
                None, queries.release, self.db, self.owner, list(self.inflight), time.time()
            )
        await loop.run_in_executor(None, control.forget_worker, self.db, self.owner)
