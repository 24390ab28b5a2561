"""The webhook sender: drains the outbox with signed JSON POSTs, retrying with backoff.

``bulkmail webhooks run`` runs it as its own process, beside the workers: the senders never
wait for a webhook receiver, and a slow or dead receiver costs them nothing but outbox rows.
Each pass claims up to ``batch`` due rows under a lease, POSTs them (``concurrency`` at
once, each with the same body and event id on every try), deletes the rows answered 2xx
and reschedules the others: ``retry_initial`` seconds, doubled per failed attempt up to
``retry_max``, with jitter. An event is never dropped: a receiver that is down for a day
gets that day's events when it is back.

An endpoint that fails is left out of the claims until its own backoff ends (it doubles with
each consecutive failure, and resets on a 2xx), so a dead receiver is tried once per backoff,
not once per owed event, and the events of the other endpoints keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bulkmail.db.engine import Database
from bulkmail.errors import DatabaseError
from bulkmail.webhooks import outbox
from bulkmail.webhooks.signature import EVENT_HEADER, HEADER, sign

log = logging.getLogger("bulkmail.webhooks")

USER_AGENT = "bulkmail-webhooks/1"
_SKIPPED = "skipped: endpoint backing off"  # a row left untried in its batch


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def retry_delay(attempts: int, initial: float, maximum: float, jitter: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones (1 = the first failure):
    ``initial`` doubled per earlier failure, at most ``maximum``, times ``jitter`` (~1)."""
    return min(initial * 2 ** max(attempts - 1, 0), maximum) * jitter


@dataclass(frozen=True)
class SenderOptions:
    secret: bytes
    timeout: float = 10.0
    concurrency: int = 8
    retry_initial: float = 10.0
    retry_max: float = 3600.0
    per_post: int = 1  # events per POST; more than 1: a JSON array
    batch: int = 200  # rows per claim (at least per_post x concurrency)
    lease: float = 120.0  # a claimed row's lease: a crashed sender's rows are due after it
    poll: float = 1.0  # seconds between looks at an empty outbox


@dataclass
class SenderStats:
    delivered: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Endpoint:
    failures: int = 0
    down_until: float = 0.0


class WebhookSender:
    """Drains ``db``'s outbox; :meth:`run` until ``stop`` is set (or, ``once``, until
    nothing is due)."""

    def __init__(
        self,
        db: Database,
        options: SenderOptions,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.options = options
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = SenderStats()
        self.endpoints: dict[str, _Endpoint] = {}

    async def run(self, stop: asyncio.Event | None = None, once: bool = False) -> SenderStats:
        stop = stop or asyncio.Event()
        limits = httpx.Limits(max_connections=self.options.concurrency)
        async with httpx.AsyncClient(
            timeout=self.options.timeout, limits=limits, follow_redirects=False
        ) as client:
            while not stop.is_set():
                now = self.clock()
                down = [ep for ep, st in self.endpoints.items() if st.down_until > now]
                try:
                    owed = await asyncio.to_thread(
                        outbox.claim, self.db, now, self.options.lease, self.options.batch, down
                    )
                    if owed:
                        await self._send_batch(client, owed)
                        continue
                except DatabaseError as exc:
                    if once:
                        raise
                    # A database blip must not end the service: what was claimed comes back
                    # after its lease, and what was POSTed may be POSTed again (at-least-once).
                    log.warning("webhooks: %s; trying again in %g s", exc, self.options.poll * 5)
                    await _sleep(stop, self.options.poll * 5)
                    continue
                if once:
                    break
                await _sleep(stop, self.options.poll)
        return self.stats

    async def _send_batch(self, client: httpx.AsyncClient, owed: list[outbox.Owed]) -> None:
        """POST a claimed batch, ``per_post`` events of one endpoint per request. Once an
        endpoint fails, the batch's other rows for it are put back untried: a receiver that
        hangs costs ``concurrency`` timeouts per backoff, not one timeout per owed event."""
        gate = asyncio.Semaphore(self.options.concurrency)
        per_post = self.options.per_post
        by_endpoint: dict[str, list[outbox.Owed]] = {}
        for item in owed:
            by_endpoint.setdefault(item.endpoint, []).append(item)
        posts = [
            rows[i : i + per_post]
            for rows in by_endpoint.values()
            for i in range(0, len(rows), per_post)
        ]

        async def one(post: list[outbox.Owed]) -> str | None:
            url = post[0].endpoint
            async with gate:
                if self.endpoints.setdefault(url, _Endpoint()).down_until > self.clock():
                    return _SKIPPED
                error = await self._post(client, post)
                self._judge(url, error)
                return error

        errors = await asyncio.gather(*(one(p) for p in posts))
        now = self.clock()
        ok, failures, skipped = [], [], []
        for post, error in zip(posts, errors, strict=True):
            for item in post:
                if error is None:
                    ok.append(item.id)
                elif error is _SKIPPED:
                    skipped.append(item.id)
                else:
                    failures.append((item.id, now + self._delay(item.attempts + 1), error))
                    self.stats.errors[error] = self.stats.errors.get(error, 0) + 1
        await asyncio.to_thread(outbox.delivered, self.db, ok)
        await asyncio.to_thread(outbox.retry_later, self.db, failures)
        await asyncio.to_thread(outbox.put_back, self.db, skipped, now)
        self.stats.delivered += len(ok)
        self.stats.failed += len(failures)

    def _judge(self, url: str, error: str | None) -> None:
        """An answer moves its endpoint's backoff: a 2xx ends it, a failure starts or doubles
        it (once per backoff period: the failures in flight with it do not count again)."""
        endpoint = self.endpoints[url]
        if error is None:
            endpoint.failures, endpoint.down_until = 0, 0.0
            return
        now = self.clock()
        if endpoint.down_until <= now:
            endpoint.failures += 1
            endpoint.down_until = now + self._delay(endpoint.failures)
            log.warning("webhook %s: %s; next try in %.0f s", url, error, endpoint.down_until - now)

    def _delay(self, attempts: int) -> float:
        jitter = self.rng.uniform(0.9, 1.1)
        return retry_delay(attempts, self.options.retry_initial, self.options.retry_max, jitter)

    async def _post(self, client: httpx.AsyncClient, post: list[outbox.Owed]) -> str | None:
        """None when the endpoint took the events (2xx), else what went wrong, in a few words.
        One event is one JSON object; with ``per_post`` > 1, a JSON array of them."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.options.per_post == 1:
            body = post[0].payload.encode()
            headers[EVENT_HEADER] = post[0].event_id
        else:
            body = ("[" + ",".join(item.payload for item in post) + "]").encode()
        headers[HEADER] = sign(self.options.secret, body, int(self.clock()))
        try:
            response = await client.post(post[0].endpoint, content=body, headers=headers)
        except httpx.TimeoutException:
            return "timed out"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


def options_from(settings: object, secret: bytes) -> SenderOptions:
    hooks = settings.webhooks  # type: ignore[attr-defined]
    return SenderOptions(
        secret=secret,
        timeout=hooks.timeout,
        concurrency=hooks.concurrency,
        retry_initial=hooks.retry_initial,
        retry_max=hooks.retry_max,
        per_post=hooks.events_per_post,
        batch=max(200, hooks.events_per_post * hooks.concurrency),
    )


def webhook_secret(settings: object) -> bytes:
    """The signing key, from the variable ``[webhooks] secret_env`` names; ConfigError if it
    is unset or short."""
    import os

    from bulkmail.errors import ConfigError

    hooks = settings.webhooks  # type: ignore[attr-defined]
    source = settings.source  # type: ignore[attr-defined]
    if not hooks.urls:
        raise ConfigError(f"{source}: webhooks.urls: no endpoint configured ([webhooks] urls)")
    value = os.environ.get(hooks.secret_env, "")
    if len(value.encode()) < 16:
        state = "is not set" if not value else "must be at least 16 characters"
        raise ConfigError(
            f"{source}: webhooks.secret_env: environment variable {hooks.secret_env} {state} "
            "(the HMAC key webhook receivers verify; try: openssl rand -hex 32)"
        )
    return value.encode()


def run_sender(settings: object, db: Database, once: bool = False) -> SenderStats:
    """Drain the outbox until SIGINT/SIGTERM (or, ``once``, until nothing is due now)."""
    import signal

    sender = WebhookSender(db, options_from(settings, webhook_secret(settings)))

    async def main() -> SenderStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await sender.run(stop, once=once)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
