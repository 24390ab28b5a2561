"""``MtaSts``'s cache rules (RFC 8461 5.1) with fake lookups, a fake store and a fake fetch:
what is read, fetched and kept, and when. The HTTPS fetch itself is tested on loopback in
tests/integration/test_mta_sts.py."""

from __future__ import annotations

import asyncio

from bulkmail.db.stspolicies import CachedPolicy
from bulkmail.delivery.mtasts import FetchError, MtaSts
from bulkmail.delivery.stspolicy import Policy

POLICY = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 100\n"


class Lookups:
    def __init__(self) -> None:
        self.txt_records: dict[str, tuple[str, ...]] = {}

    async def txt(self, name: str) -> tuple[str, tuple[str, ...]]:
        records = self.txt_records.get(name)
        return ("ok", records) if records else ("nodata", ())

    async def host_addresses(self, host: str) -> tuple[tuple[str, ...], str]:
        return ("127.0.0.1",), ""


class Store:
    def __init__(self, *policies: CachedPolicy) -> None:
        self.rows = {p.domain: p for p in policies}
        self.loads: list[str] = []
        self.load_alls = 0

    def load(self, domain: str) -> CachedPolicy | None:
        self.loads.append(domain)
        return self.rows.get(domain)

    def load_all(self, now: float) -> dict[str, CachedPolicy]:
        self.load_alls += 1
        return {d: p for d, p in self.rows.items() if p.expires_at > now}

    def save(self, cached: CachedPolicy) -> None:
        self.rows[cached.domain] = cached


class Fake(MtaSts):
    """MtaSts with the HTTPS fetch replaced: ``body`` is served, or FetchError if None."""

    def __init__(self, lookups: Lookups, store: Store | None, now: list[float]) -> None:
        super().__init__(lookups, store=store, clock=lambda: now[0], monotonic=lambda: now[0])
        self.body: str | None = POLICY
        self.fetched = 0

    async def fetch(self, domain: str) -> str:
        self.fetched += 1
        if self.body is None:
            raise FetchError("down")
        return self.body


def cached(policy_id: str, expires_at: float, domain: str = "a.test") -> CachedPolicy:
    return CachedPolicy(domain, policy_id, Policy("enforce", ("mx.a.test",), 100), 0.0, expires_at)


def test_a_domain_without_a_record_costs_no_database_read_and_no_fetch() -> None:
    store, now = Store(), [1000.0]
    sts = Fake(Lookups(), store, now)
    for _ in range(3):
        assert asyncio.run(sts.policy("plain.test")) is None
    assert (store.load_alls, store.loads, sts.fetched) == (1, [], 0)


def test_the_same_id_is_served_from_memory_until_max_age_then_fetched_again() -> None:
    lookups, store, now = Lookups(), Store(), [1000.0]
    lookups.txt_records["_mta-sts.a.test"] = ("v=STSv1; id=1",)
    sts = Fake(lookups, store, now)
    first = asyncio.run(sts.policy("a.test"))
    assert first is not None and first.policy.mx == ("mx.a.test",) and sts.fetched == 1
    assert store.rows["a.test"].policy_id == "1"  # shared with the fleet
    now[0] += 99
    assert asyncio.run(sts.policy("a.test")) == first and sts.fetched == 1
    now[0] += 2  # past max_age (100 s)
    asyncio.run(sts.policy("a.test"))
    assert sts.fetched == 2


def test_a_failed_fetch_keeps_the_valid_policy_and_is_not_retried_for_a_while() -> None:
    lookups, now = Lookups(), [1000.0]
    store = Store(cached("1", expires_at=5000.0))
    lookups.txt_records["_mta-sts.a.test"] = ("v=STSv1; id=2",)  # a new id: refresh
    sts = Fake(lookups, store, now)
    sts.body = None
    held = asyncio.run(sts.policy("a.test"))
    assert held is not None and held.policy_id == "1" and sts.fetched == 1
    asyncio.run(sts.policy("a.test"))
    assert sts.fetched == 1  # within retry_seconds: no second attempt
    now[0] += 61
    sts.body = POLICY
    assert asyncio.run(sts.policy("a.test")).policy_id == "2"  # type: ignore[union-attr]


def test_a_policy_another_engine_fetched_is_taken_from_the_store() -> None:
    lookups, now = Lookups(), [1000.0]
    store = Store(cached("1", expires_at=5000.0))
    lookups.txt_records["_mta-sts.a.test"] = ("v=STSv1; id=2",)
    sts = Fake(lookups, store, now)
    asyncio.run(sts.policy("b.test"))  # the engine starts: preloads id 1
    store.rows["a.test"] = cached("2", expires_at=6000.0)  # meanwhile another engine fetched
    assert asyncio.run(sts.policy("a.test")).policy_id == "2"  # type: ignore[union-attr]
    assert sts.fetched == 0


def test_an_expired_stored_policy_is_not_used_when_the_fetch_fails() -> None:
    lookups, now = Lookups(), [1000.0]
    store = Store(cached("1", expires_at=900.0))
    lookups.txt_records["_mta-sts.a.test"] = ("v=STSv1; id=1",)
    sts = Fake(lookups, store, now)
    sts.body = None
    assert asyncio.run(sts.policy("a.test")) is None
