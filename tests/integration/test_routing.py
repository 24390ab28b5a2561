"""MxResolver against a real DNS server on loopback (bulkmail.peers.dns)."""

from __future__ import annotations

import asyncio
import random

import pytest

from bulkmail.delivery.classify import Disposition, classify_reply
from bulkmail.delivery.routing import MxHost, MxResolver, Route
from bulkmail.errors import ConfigError
from bulkmail.peers.dns import DnsServer, Zone


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(server: DnsServer, **kwargs: object) -> MxResolver:
    kwargs.setdefault("timeout", 2.0)
    return MxResolver([server.host], server.port, **kwargs)  # type: ignore[arg-type]


def route(res: MxResolver, domain: str) -> Route:
    return asyncio.run(res.route(domain))


def mx_queries(server: DnsServer, name: str) -> int:
    return server.queries.count((name, "MX"))


def add_hosts(zone: Zone, hosts: dict[str, str]) -> None:
    for name, address in hosts.items():
        zone.add(name, "A", address)


def test_hosts_come_in_preference_order_with_their_addresses(
    dns_zone: Zone, dns_server: DnsServer
) -> None:
    for line in ("20 mx2.example.test.", "10 mx1.example.test.", "30 mx3.example.test."):
        dns_zone.add("example.test", "MX", line)
    dns_zone.add("example.test", "A", "127.0.0.99")  # must be ignored: MX records exist
    add_hosts(
        dns_zone,
        {
            "mx1.example.test": "127.0.0.2",
            "mx2.example.test": "127.0.0.3",
            "mx3.example.test": "127.0.0.4",
        },
    )
    dns_zone.add("mx1.example.test", "AAAA", "::1")

    result = route(resolver(dns_server), "Example.TEST.")

    assert result == Route(
        "example.test",
        (
            MxHost("mx1.example.test", 10, ("127.0.0.2", "::1")),
            MxHost("mx2.example.test", 20, ("127.0.0.3",)),
            MxHost("mx3.example.test", 30, ("127.0.0.4",)),
        ),
        "mx1.example.test,mx2.example.test,mx3.example.test",
    )


def test_equal_preferences_are_shuffled_on_every_call(
    dns_zone: Zone, dns_server: DnsServer
) -> None:
    for line in ("10 a.mx.test.", "10 b.mx.test.", "20 c.mx.test."):
        dns_zone.add("shuffle.test", "MX", line)
    add_hosts(
        dns_zone, {"a.mx.test": "127.0.0.2", "b.mx.test": "127.0.0.3", "c.mx.test": "127.0.0.4"}
    )
    res = resolver(dns_server, rng=random.Random(42))

    async def many() -> list[tuple[str, ...]]:
        return [tuple(h.name for h in (await res.route("shuffle.test")).hosts) for _ in range(40)]

    orders = set(asyncio.run(many()))
    assert orders == {
        ("a.mx.test", "b.mx.test", "c.mx.test"),
        ("b.mx.test", "a.mx.test", "c.mx.test"),
    }
    assert mx_queries(dns_server, "shuffle.test") == 1


def test_no_mx_records_means_the_domain_itself_is_the_mx(
    dns_zone: Zone, dns_server: DnsServer
) -> None:
    dns_zone.add("implicit.test", "A", "127.0.0.5")
    dns_zone.add("implicit.test", "TXT", "v=spf1 -all")

    result = route(resolver(dns_server), "implicit.test")

    assert result == Route(
        "implicit.test", (MxHost("implicit.test", 0, ("127.0.0.5",)),), "implicit.test"
    )


def test_no_mx_and_no_address_bounces(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("txtonly.test", "TXT", "hello")

    result = route(resolver(dns_server), "txtonly.test")

    assert result.hosts == () and result.reply is not None
    assert (result.reply.code, result.reply.enhanced) == (550, "5.1.2")


def test_null_mx_bounces_without_looking_up_any_host(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("nomail.test", "MX", "0 .")
    dns_zone.add("nomail.test", "A", "127.0.0.6")

    result = route(resolver(dns_server), "nomail.test")

    assert result.hosts == () and result.reply is not None
    assert (result.reply.code, result.reply.enhanced) == (556, "5.1.10")
    assert classify_reply(result.reply).disposition is Disposition.BOUNCED
    assert dns_server.queries == [("nomail.test", "MX")]


def test_a_null_mx_mixed_with_real_mx_records_is_ignored(
    dns_zone: Zone, dns_server: DnsServer
) -> None:
    dns_zone.add("mixed.test", "MX", "0 .")
    dns_zone.add("mixed.test", "MX", "10 mx.mixed.test.")
    dns_zone.add("mx.mixed.test", "A", "127.0.0.2")

    result = route(resolver(dns_server), "mixed.test")

    assert [h.name for h in result.hosts] == ["mx.mixed.test"] and result.reply is None


def test_nxdomain_bounces_with_5_1_2(dns_server: DnsServer) -> None:
    result = route(resolver(dns_server), "nowhere.test")

    assert result.reply is not None and result.hosts == ()
    assert (result.reply.code, result.reply.enhanced) == (550, "5.1.2")
    verdict = classify_reply(result.reply)
    assert (verdict.disposition, verdict.suppress) == (Disposition.BOUNCED, True)


def test_servfail_defers_with_4_4_3(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.servfail("broken.test")

    result = route(resolver(dns_server), "broken.test")

    assert result.reply is not None
    assert (result.reply.code, result.reply.enhanced) == (451, "4.4.3")
    assert classify_reply(result.reply).disposition is Disposition.DEFERRED


def test_a_dns_timeout_defers_with_4_4_3(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.timeout("silent.test")

    result = route(resolver(dns_server, timeout=0.5), "silent.test")

    assert result.reply is not None
    assert (result.reply.code, result.reply.enhanced) == (451, "4.4.3")
    assert "timeout" in result.reply.text


def test_an_mx_host_without_address_is_skipped(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("partial.test", "MX", "10 gone.partial.test.")
    dns_zone.add("partial.test", "MX", "20 bad.partial.test.")
    dns_zone.add("partial.test", "MX", "30 ok.partial.test.")
    dns_zone.servfail("bad.partial.test")
    dns_zone.add("ok.partial.test", "A", "127.0.0.7")

    result = route(resolver(dns_server), "partial.test")

    assert result.hosts == (MxHost("ok.partial.test", 30, ("127.0.0.7",)),)
    assert result.site == "bad.partial.test,gone.partial.test,ok.partial.test"


def test_no_mx_host_with_an_address_defers(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("dangling.test", "MX", "10 gone.dangling.test.")

    result = route(resolver(dns_server), "dangling.test")

    assert result.reply is not None and result.reply.enhanced == "4.4.3"
    assert classify_reply(result.reply).disposition is Disposition.DEFERRED


def test_answers_are_cached_for_their_ttl(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("cached.test", "MX", "10 mx.cached.test.", ttl=300)
    dns_zone.add("mx.cached.test", "A", "127.0.0.2", ttl=600)
    clock = FakeClock()
    res = resolver(dns_server, clock=clock, ipv6=False)

    first = route(res, "cached.test")
    clock.now += 299
    second = route(res, "cached.test")
    assert second == first
    assert dns_server.queries == [("cached.test", "MX"), ("mx.cached.test", "A")]

    clock.now += 2  # the MX record expired, the A record not yet
    route(res, "cached.test")
    assert dns_server.queries[2:] == [("cached.test", "MX")]


def test_nxdomain_is_cached_for_the_negative_ttl(dns_server: DnsServer) -> None:
    clock = FakeClock()
    res = resolver(dns_server, clock=clock)

    route(res, "nowhere.test")
    clock.now += 60
    assert route(res, "nowhere.test").reply is not None
    assert mx_queries(dns_server, "nowhere.test") == 1


def test_servfail_is_cached_only_briefly(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.servfail("flaky.test")
    clock = FakeClock()
    res = resolver(dns_server, clock=clock, failure_ttl=60.0)

    assert route(res, "flaky.test").reply is not None
    dns_zone.remove("flaky.test")
    dns_zone.add("flaky.test", "A", "127.0.0.8")
    clock.now += 30
    assert route(res, "flaky.test").reply is not None
    assert mx_queries(dns_server, "flaky.test") == 1

    clock.now += 31
    recovered = route(res, "flaky.test")
    assert recovered.reply is None and recovered.hosts[0].addresses == ("127.0.0.8",)


def test_domains_with_the_same_mx_hosts_share_a_site(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("one.test", "MX", "10 mx1.hosting.test.")
    dns_zone.add("one.test", "MX", "20 mx2.hosting.test.")
    dns_zone.add("two.test", "MX", "5 MX2.hosting.test.")
    dns_zone.add("two.test", "MX", "5 mx1.hosting.test.")
    dns_zone.add("three.test", "MX", "10 mx1.hosting.test.")
    add_hosts(dns_zone, {"mx1.hosting.test": "127.0.0.2", "mx2.hosting.test": "127.0.0.3"})
    res = resolver(dns_server)

    async def sites() -> list[str]:
        return [(await res.route(d)).site for d in ("one.test", "two.test", "three.test")]

    one, two, three = asyncio.run(sites())
    assert one == two == "mx1.hosting.test,mx2.hosting.test"
    assert three == "mx1.hosting.test"


def test_concurrent_routes_for_one_domain_share_one_lookup(
    dns_zone: Zone, dns_server: DnsServer
) -> None:
    dns_zone.add("busy.test", "MX", "10 mx.busy.test.")
    dns_zone.add("mx.busy.test", "A", "127.0.0.2")
    res = resolver(dns_server)

    async def together() -> list[Route]:
        return await asyncio.gather(*(res.route("busy.test") for _ in range(20)))

    routes = asyncio.run(together())
    assert all(r == routes[0] and r.reply is None for r in routes)
    assert mx_queries(dns_server, "busy.test") == 1
    assert dns_server.queries.count(("mx.busy.test", "A")) == 1


def test_static_routes_override_dns(dns_zone: Zone, dns_server: DnsServer) -> None:
    dns_zone.add("relay.internal.test", "A", "127.0.0.9")
    res = resolver(
        dns_server,
        static_routes={"Corp.TEST": ["127.0.0.5:2525", "relay.internal.test", "[::1]:26"]},
    )

    result = route(res, "corp.test")

    assert result.hosts == (
        MxHost("127.0.0.5", 0, ("127.0.0.5",), 2525),
        MxHost("relay.internal.test", 1, ("127.0.0.9",), None),
        MxHost("::1", 2, ("::1",), 26),
    )
    assert result.site == "127.0.0.5:2525,[::1]:26,relay.internal.test"
    assert ("corp.test", "MX") not in dns_server.queries


def test_a_malformed_static_route_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="static route"):
        MxResolver(["127.0.0.1"], static_routes={"x.test": ["host:notaport"]})


def test_an_address_literal_routes_to_that_address(dns_server: DnsServer) -> None:
    result = route(resolver(dns_server), "[127.0.0.2]")

    assert result.hosts == (MxHost("127.0.0.2", 0, ("127.0.0.2",)),)
    assert dns_server.queries == []


def test_an_invalid_domain_bounces_without_a_query(dns_server: DnsServer) -> None:
    result = route(resolver(dns_server), "bad..domain")

    assert result.reply is not None and result.reply.enhanced == "5.1.2"
    assert dns_server.queries == []
