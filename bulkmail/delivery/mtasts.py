"""MTA-STS discovery (RFC 8461): the TXT lookup, the HTTPS policy fetch, the policy cache.

``MtaSts.policy(domain)`` answers with the policy in force for a recipient domain, or None.
It is called for every route (once per claimed batch per domain, not per message) and costs a
dictionary lookup plus the resolver's cached TXT lookup unless something changed:

- ``_mta-sts.<domain>`` TXT through the configured [dns] resolver (``MxResolver``: cached for
  the record's TTL). No (usable) record: the cached policy, if still valid, else none.
- The TXT id equal to the cached policy's and the policy within ``max_age``: the cached one.
  The valid stored policies are read from the database once, at the first route, in one
  query, so a domain without MTA-STS never costs a database read.
- Otherwise the database row (another engine of the fleet may have fetched it), else a fetch
  of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the host name resolved through the
  same resolver, the certificate verified (system CAs plus ``[sender] ca_file``) for
  ``mta-sts.<domain>``, 200 and ``text/plain`` only, no redirects, 64 KiB at most. A fetched
  policy is stored for the fleet.
- A failed fetch (or a bad policy) keeps the cached policy while it is valid (RFC 8461 5.1)
  and is not retried for ``retry_seconds``: a dead policy host costs one attempt a minute.

The database is optional (``store``): tests of the fetch can run without one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from bulkmail.db.stspolicies import CachedPolicy
from bulkmail.delivery.stspolicy import PolicyError, parse_policy, parse_txt
from bulkmail.delivery.tlspolicy import verifying_context

__all__ = ["FetchError", "MtaSts", "PolicyStore"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # RFC 8461 3.3: policies are small; a limit keeps a hostile host cheap
WELL_KNOWN = "/.well-known/mta-sts.txt"


class FetchError(Exception):
    """The policy could not be fetched or parsed; the message says where and why."""


class _Lookups(Protocol):
    """What MTA-STS needs of the resolver (``MxResolver``)."""

    async def txt(self, name: str) -> tuple[str, tuple[str, ...]]: ...

    async def host_addresses(self, host: str) -> tuple[tuple[str, ...], str]: ...


class PolicyStore(Protocol):
    """Where fetched policies are shared (``bulkmail.db.stspolicies`` bound to a database)."""

    def load(self, domain: str) -> CachedPolicy | None: ...

    def load_all(self, now: float) -> dict[str, CachedPolicy]: ...

    def save(self, cached: CachedPolicy) -> None: ...


class MtaSts:
    """The MTA-STS policies of recipient domains, as one worker sees them."""

    def __init__(
        self,
        lookups: _Lookups,
        *,
        ca_file: str | None = None,
        port: int = 443,
        store: PolicyStore | None = None,
        timeout: float = 10.0,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookups = lookups
        self._context = verifying_context(ca_file)
        self._port = port
        self._store = store
        self._timeout = timeout
        self._retry = retry_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._known: dict[str, CachedPolicy | None] = {}  # domain -> the policy we hold
        self._failed: dict[tuple[str, str], float] = {}  # (domain, id) -> retry after
        self._inflight: dict[str, asyncio.Future[CachedPolicy | None]] = {}
        self._preloaded = store is None
        self._preloading: asyncio.Future[None] | None = None

    async def policy(self, domain: str) -> CachedPolicy | None:
        """The policy in force for ``domain`` (mode none included), or None."""
        status, records = await self._lookups.txt(f"_mta-sts.{domain}")
        policy_id = parse_txt(records) if status == "ok" else None
        if not self._preloaded:
            await self._preload()
        held = self._valid(self._known.get(domain))
        if policy_id is None or (held is not None and held.policy_id == policy_id):
            return held
        future = self._inflight.get(domain)
        if future is None:
            future = asyncio.ensure_future(self._refresh(domain, policy_id, held))
            self._inflight[domain] = future
            future.add_done_callback(lambda _: self._inflight.pop(domain, None))
        return await asyncio.shield(future)

    async def _preload(self) -> None:
        """Every valid stored policy, in one query (once; concurrent callers wait for it)."""
        if self._preloading is None:
            self._preloading = asyncio.ensure_future(self._read_all())
        await asyncio.shield(self._preloading)

    async def _read_all(self) -> None:
        try:
            if self._store is not None:
                stored = await asyncio.to_thread(self._store.load_all, self._clock())
                for domain, cached in stored.items():
                    self._known.setdefault(domain, cached)
        except Exception as exc:  # noqa: BLE001 - no shared cache: the memory one will do
            log.warning("cannot read the stored MTA-STS policies: %s", exc)
        self._preloaded = True

    def _valid(self, cached: CachedPolicy | None) -> CachedPolicy | None:
        return cached if cached is not None and cached.expires_at > self._clock() else None

    async def _refresh(
        self, domain: str, policy_id: str, held: CachedPolicy | None
    ) -> CachedPolicy | None:
        """A new policy for ``policy_id``: from the fleet's store, else fetched; else ``held``."""
        stored = self._valid(await self._load(domain))
        if stored is not None and stored.policy_id == policy_id:
            self._known[domain] = stored
            return stored
        key = (domain, policy_id)
        if self._failed.get(key, 0.0) > self._monotonic():
            return held
        try:
            text = await self.fetch(domain)
            policy = parse_policy(text)
        except (FetchError, PolicyError) as exc:
            log.warning("MTA-STS policy of %s (id %s): %s", domain, policy_id, exc)
            if len(self._failed) > 10_000:
                self._failed.clear()
            self._failed[key] = self._monotonic() + self._retry
            return held
        now = self._clock()
        fresh = CachedPolicy(domain, policy_id, policy, now, now + policy.max_age)
        self._known[domain] = fresh
        if self._store is not None:
            try:
                await asyncio.to_thread(self._store.save, fresh)
            except Exception as exc:  # noqa: BLE001 - the policy is in force all the same
                log.warning("cannot store the MTA-STS policy of %s: %s", domain, exc)
        return fresh

    async def _load(self, domain: str) -> CachedPolicy | None:
        if self._store is None:
            return self._known.get(domain)
        try:
            return await asyncio.to_thread(self._store.load, domain)
        except Exception as exc:  # noqa: BLE001 - no shared cache: the memory one will do
            log.warning("cannot read the stored MTA-STS policy of %s: %s", domain, exc)
            return self._known.get(domain)

    async def fetch(self, domain: str) -> str:
        """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; ``FetchError``."""
        host = f"mta-sts.{domain}"
        addresses, why = await self._lookups.host_addresses(host)
        if not addresses:
            raise FetchError(f"{host}: no address ({why or 'not found'})")
        errors = []
        for address in addresses:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._get(host, address)
            except FetchError as exc:
                errors.append(str(exc))
            except TimeoutError:
                errors.append(f"{host}[{address}]:{self._port}: timed out")
            except ssl.SSLCertVerificationError as exc:
                errors.append(f"{host}[{address}]: certificate: {exc.verify_message}")
            except (OSError, ssl.SSLError) as exc:
                errors.append(f"{host}[{address}]:{self._port}: {exc}")
        raise FetchError("; ".join(errors))

    async def _get(self, host: str, address: str) -> str:
        reader, writer = await asyncio.open_connection(
            address, self._port, ssl=self._context, server_hostname=host
        )
        try:
            writer.write(
                f"GET {WELL_KNOWN} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: bulkmail\r\n"
                "Accept: text/plain\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            await writer.drain()
            data = b""
            while len(data) <= MAX_BODY + 16384:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            writer.close()
        return parse_response(data, f"https://{host}{WELL_KNOWN}")


def parse_response(data: bytes, where: str) -> str:
    """The policy text of an HTTP/1.x response: 200, text/plain, within the size limit."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise FetchError(f"{where}: no complete HTTP response")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1."):
        raise FetchError(f"{where}: not an HTTP response: {lines[0][:60]!r}")
    if status[1] != "200":  # RFC 8461 3.3: no redirects followed, anything else fails
        raise FetchError(f"{where}: HTTP {' '.join(status[1:])[:80]}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "text/plain":
        raise FetchError(f"{where}: Content-Type {media or 'missing'!r}, not text/plain")
    if headers.get("transfer-encoding", "identity").lower() != "identity":
        raise FetchError(f"{where}: Transfer-Encoding {headers['transfer-encoding']!r}")
    if len(body) > MAX_BODY:
        raise FetchError(f"{where}: policy larger than {MAX_BODY} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(f"{where}: policy is not UTF-8") from None
