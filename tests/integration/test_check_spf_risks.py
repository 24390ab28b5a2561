"""SPF records that pass yet protect nothing: ``+all``, ``?all`` and ``ptr`` are warned about,
with the hardened record as the remedy, evaluated by pyspf against a real DNS server."""

from __future__ import annotations

import pytest

from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.readiness.dnschecks import check_spf
from bulkmail.readiness.lookup import Lookup

IP = "192.0.2.10"
HELO = "mail.sender.test"
RP = "bounces.sender.test"


@pytest.fixture
def lookup(dns_zone: Zone, dns_server: DnsServer) -> Lookup:
    dns_zone.add_ptr(IP, f"{HELO}.")
    dns_zone.add(HELO, "A", IP)
    return Lookup(["127.0.0.1"], dns_server.port, 1.0)


@pytest.mark.parametrize(
    ("record", "said", "remedy"),
    [
        ("v=spf1 +all", "'+all' authorises every host", "v=spf1 ip4:192.0.2.10 ~all"),
        ("v=spf1 a:mail.sender.test all", "'all' authorises every host", "~all"),
        ("v=spf1 ptr:sender.test -all", "RFC 7208 §5.5", "v=spf1 ip4:192.0.2.10 -all"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "'?all' leaves every other host neutral", "~all"),
    ],
)
def test_a_passing_record_that_protects_nothing_is_a_warning(
    lookup: Lookup, dns_zone: Zone, record: str, said: str, remedy: str
) -> None:
    dns_zone.add(RP, "TXT", record)
    result = check_spf(lookup, RP, IP, helo=HELO)
    assert result.status == "warn", result
    assert "SPF pass" in result.detail and said in result.detail, result
    assert remedy in result.remedy and "ptr" not in result.remedy, result


def test_a_tight_record_still_passes_silently(lookup: Lookup, dns_zone: Zone) -> None:
    dns_zone.add(RP, "TXT", "v=spf1 ip4:192.0.2.0/24 ~all")
    result = check_spf(lookup, RP, IP, helo=HELO)
    assert (result.status, result.remedy) == ("pass", "")
