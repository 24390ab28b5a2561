"""MTA-STS (RFC 8461) end to end on loopback: the DNS peer publishes ``_mta-sts`` TXT and the
MX records, an HTTPS peer with a trustme certificate serves the policies (the CA reaches the
sender through ``[sender] ca_file``), SMTP peers play the MX hosts. Under an enforced policy
nothing may be sent in plaintext: the MX peers record every MAIL and DATA they receive.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from rich.console import Console

from bulkmail.peers.https import HttpsServer
from bulkmail.peers.smtp import free_port
from bulkmail.reports import build_report
from bulkmail.reports.html import render_html
from bulkmail.reports.text import print_report
from tests.integration.world import SENDING_DOMAIN, World

POLICY_IP = "127.0.0.20"
MX_IP = "127.0.0.2"
MX_NAME = f"mx-127-0-0-2.{SENDING_DOMAIN}"  # world.mx's name for 127.0.0.2
ContextFactory = Callable[..., ssl.SSLContext]


def policy(mode: str = "enforce", mx: str = f"*.{SENDING_DOMAIN}", max_age: int = 86400) -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: {max_age}\r\n"


@pytest.fixture
def sts(
    world: World, tls_ca: trustme.CA, tls_server_context: ContextFactory, tmp_path: Path
) -> Iterator[HttpsServer]:
    """The policy host for a.test and b.test, trusted through [sender] ca_file."""
    ca = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    context = tls_server_context("mta-sts.a.test", "mta-sts.b.test")
    server = HttpsServer(POLICY_IP, free_port((POLICY_IP,)), context).start()
    world.configure("sender", ca_file=str(ca), mta_sts_port=server.port)
    for domain in ("a.test", "b.test"):
        world.zone.add(f"mta-sts.{domain}", "A", POLICY_IP)
    try:
        yield server
    finally:
        server.stop()


def publish(world: World, domain: str, policy_id: str) -> None:
    world.zone.remove(f"_mta-sts.{domain}", "TXT")
    world.zone.add(f"_mta-sts.{domain}", "TXT", [f"v=STSv1; id={policy_id};"])


def send_one(world: World, email: str = "x@a.test") -> dict:
    world.subscribers([email])
    cid = world.campaign()
    world.send(cid)
    return {e: d for e, d in world.states(cid).items() if e == email}


def test_enforced_policy_delivers_over_tls_verified_for_the_mx_name(
    world: World, sts: HttpsServer, tls_server_context: ContextFactory
) -> None:
    sts.policy("a.test", policy())
    publish(world, "a.test", "20260101")
    world.mx("a.test", (10, MX_IP), starttls_context=tls_server_context(MX_NAME))
    row = send_one(world)["x@a.test"]
    assert row.state == "sent"
    assert row.tls_auth == "mta-sts" and row.tls_authenticated is True
    assert row.tls_version is not None and row.tls_version.startswith("TLSv1")
    assert world.servers[MX_IP].commands == [("MAIL", True), ("DATA", True)]
    assert world.sql("SELECT policy_id, mode FROM mta_sts_policies")[0] == ("20260101", "enforce")


def test_enforced_policy_defers_an_mx_without_starttls_and_sends_nothing(
    world: World, sts: HttpsServer
) -> None:
    sts.policy("a.test", policy())
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP))  # no STARTTLS offered
    row = send_one(world)["x@a.test"]
    assert row.state == "deferred"
    assert row.last_text.startswith("MTA-STS policy of a.test (id 1, mode enforce)")
    assert "STARTTLS not offered" in row.last_text
    assert world.servers[MX_IP].commands == []  # no MAIL, no DATA: nothing in plaintext


def test_enforced_policy_defers_a_certificate_for_another_name(
    world: World, sts: HttpsServer, tls_server_context: ContextFactory
) -> None:
    sts.policy("a.test", policy())
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP), starttls_context=tls_server_context("other.example"))
    row = send_one(world)["x@a.test"]
    assert row.state == "deferred"
    assert row.last_text.startswith("MTA-STS policy of a.test")
    assert "mismatch" in row.last_text.lower() or "hostname" in row.last_text.lower()
    assert world.servers[MX_IP].commands == []


def test_enforced_policy_defers_an_mx_outside_the_policy_without_connecting(
    world: World, sts: HttpsServer, tls_server_context: ContextFactory
) -> None:
    sts.policy("a.test", policy(mx="mx.elsewhere.example"))
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP), starttls_context=tls_server_context(MX_NAME))
    row = send_one(world)["x@a.test"]
    assert row.state == "deferred"
    assert "no MX host matches its mx mx.elsewhere.example" in row.last_text
    assert world.servers[MX_IP].sessions_total == 0


def test_testing_policy_delivers_as_before_and_records_the_failure(
    world: World, sts: HttpsServer
) -> None:
    sts.policy("a.test", policy(mode="testing"))
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP))  # no STARTTLS: a testing policy lets it through
    row = send_one(world)["x@a.test"]
    assert row.state == "sent"
    assert row.tls_auth == "none" and row.tls_authenticated is False
    assert row.tls_failure.startswith("MTA-STS policy of a.test (id 1, mode testing)")
    assert "STARTTLS not offered" in row.tls_failure


def test_testing_only_setting_does_not_enforce_an_enforce_policy(
    world: World, sts: HttpsServer
) -> None:
    world.configure("sender", mta_sts="testing-only")
    sts.policy("a.test", policy())
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP))
    row = send_one(world)["x@a.test"]
    assert row.state == "sent" and row.tls_failure is not None


def test_a_cached_policy_is_enforced_while_the_policy_host_is_down(
    world: World, sts: HttpsServer, tls_server_context: ContextFactory
) -> None:
    sts.policy("a.test", policy())
    publish(world, "a.test", "7")
    world.mx("a.test", (10, MX_IP), starttls_context=tls_server_context(MX_NAME))
    assert send_one(world, "x@a.test")["x@a.test"].state == "sent"
    sts.stop()  # the policy host is gone; the next engine (a new process) has only the database
    world.server(MX_IP)  # and the MX lost STARTTLS: the cached enforce policy must hold
    row = send_one(world, "y@a.test")["y@a.test"]
    assert row.state == "deferred" and row.last_text.startswith("MTA-STS policy of a.test")
    assert world.servers[MX_IP].commands == []


def test_a_policy_id_change_is_picked_up_and_the_same_id_is_not_refetched(
    world: World, sts: HttpsServer
) -> None:
    sts.policy("a.test", policy(mx="mx.elsewhere.example"))
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP))
    assert send_one(world, "x@a.test")["x@a.test"].state == "deferred"
    sts.policy("a.test", policy(mode="none"))  # changed, id not: the cached policy stands
    assert send_one(world, "y@a.test")["y@a.test"].state == "deferred"
    assert sts.fetches("a.test") == 1
    publish(world, "a.test", "2")  # the id changes: fetched again, mode none now
    assert send_one(world, "z@a.test")["z@a.test"].state == "sent"
    assert sts.fetches("a.test") == 2
    assert world.sql("SELECT policy_id, mode FROM mta_sts_policies")[0] == ("2", "none")


def test_a_policy_host_with_an_untrusted_certificate_gives_no_policy(
    world: World, tls_server_context: ContextFactory, tmp_path: Path
) -> None:
    other_ca = trustme.CA()  # the sender trusts tls_ca only: this policy cannot be believed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other_ca.issue_cert("mta-sts.a.test").configure_cert(context)
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    with HttpsServer(POLICY_IP, free_port((POLICY_IP,)), context) as server:
        world.configure("sender", ca_file=str(ca), mta_sts_port=server.port)
        world.zone.add("mta-sts.a.test", "A", POLICY_IP)
        server.policy("a.test", policy(mx="mx.elsewhere.example"))
        publish(world, "a.test", "1")
        world.mx("a.test", (10, MX_IP))
        row = send_one(world)["x@a.test"]
    assert row.state == "sent" and row.tls_failure is None  # as if no MTA-STS: delivered
    assert world.sql("SELECT count(*) FROM mta_sts_policies")[0][0] == 0


def test_mta_sts_off_ignores_policies(world: World, sts: HttpsServer) -> None:
    world.configure("sender", mta_sts="off")
    sts.policy("a.test", policy(mx="mx.elsewhere.example"))
    publish(world, "a.test", "1")
    world.mx("a.test", (10, MX_IP))
    assert send_one(world)["x@a.test"].state == "sent"
    assert sts.fetches("a.test") == 0


def test_each_delivery_records_its_tls_and_the_report_shows_shares_per_destination(
    world: World, sts: HttpsServer, tls_server_context: ContextFactory
) -> None:
    sts.policy("a.test", policy())
    sts.policy("b.test", policy())
    publish(world, "a.test", "1")
    publish(world, "b.test", "1")
    world.mx("a.test", (10, MX_IP), starttls_context=tls_server_context(MX_NAME))
    world.mx("b.test", (10, "127.0.0.3"))  # enforce, no STARTTLS: deferred by the policy
    world.mx("c.test", (10, "127.0.0.4"), starttls_context=tls_server_context("mx-127-0-0-4.x"))
    world.mx("d.test", (10, "127.0.0.5"))  # no policy, no STARTTLS: plaintext
    world.configure("sender", tls="opportunistic")
    world.subscribers(["a1@a.test", "a2@a.test", "b@b.test", "c@c.test", "d@d.test"])
    cid = world.campaign()
    world.send(cid)
    rows = world.states(cid)
    a, c, d = rows["a1@a.test"], rows["c@c.test"], rows["d@d.test"]
    assert (a.tls_auth, a.tls_authenticated) == ("mta-sts", True)
    assert (c.tls_auth, c.tls_authenticated) == ("none", False)  # a certificate for another name
    assert c.tls_version is not None and c.tls == f"{c.tls_version} unverified"
    assert (d.tls_auth, d.tls_authenticated, d.tls_version, d.tls) == ("none", False, None, "none")
    assert rows["b@b.test"].state == "deferred"

    db = world.db()
    try:
        report = build_report(db, cid)
    finally:
        db.dispose()
    by_domain = {x.domain: x for x in report.destinations}
    assert by_domain["a.test"].tls_shares() == (1.0, 1.0, 0.0)
    assert by_domain["c.test"].tls_shares() == (1.0, 0.0, 0.0)
    assert by_domain["d.test"].tls_shares() == (0.0, 0.0, 1.0)
    assert by_domain["b.test"].tls_shares() is None
    assert by_domain["b.test"].policy_deferrals == 1
    assert by_domain["d.test"].policy_deferrals == 0

    console = Console(width=200, record=True)
    print_report(report, console)
    out = console.export_text()
    assert "TLS per destination" in out
    table = out.split("TLS per destination", 1)[1].splitlines()
    cells = {r[0]: r[1:] for r in (x.replace("│", " ").split() for x in table) if r}
    assert cells["a.test"] == ["2", "100.0%", "100.0%", "0.0%", "0"]
    assert cells["b.test"] == ["0", "-", "-", "-", "1"]
    assert cells["d.test"] == ["1", "0.0%", "0.0%", "100.0%", "0"]

    page = render_html(report)
    row = page.split('data-tls-domain="a.test">', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'class="n">([^<]*)<', row) == ["2", "100.0%", "100.0%", "0.0%", "0"]
    row = page.split('data-tls-domain="b.test">', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'class="n">([^<]*)<', row) == ["0", "-", "-", "-", "1"]


def test_a_per_domain_override_turns_mta_sts_off_or_on_for_that_domain(
    world: World, sts: HttpsServer
) -> None:
    for domain in ("a.test", "b.test"):
        sts.policy(domain, policy(mx="mx.elsewhere.example"))
        publish(world, domain, "1")
    world.mx("a.test", (10, MX_IP))
    world.mx("b.test", (10, "127.0.0.3"))
    world.configure('limits."a.test"', mta_sts="off")  # [sender] mta_sts: enforce (default)
    rows = {**send_one(world, "x@a.test"), **send_one(world, "y@b.test")}
    assert rows["x@a.test"].state == "sent"
    assert rows["y@b.test"].state == "deferred"

    world.configure("sender", mta_sts="off")
    world.configure('limits."a.test"', mta_sts="enforce")
    rows = {**send_one(world, "z@a.test"), **send_one(world, "w@b.test")}
    assert rows["z@a.test"].state == "deferred"
    assert rows["w@b.test"].state == "sent"


def test_a_verified_certificate_without_a_policy_is_recorded_as_pkix(
    world: World, sts: HttpsServer, tls_server_context: ContextFactory
) -> None:
    world.configure("sender", tls="opportunistic")  # sts put the trustme CA in ca_file
    world.mx("e.test", (10, MX_IP), starttls_context=tls_server_context(MX_NAME))
    row = send_one(world, "x@e.test")["x@e.test"]
    assert (row.state, row.tls_auth, row.tls_authenticated) == ("sent", "pkix", True)
    assert row.tls == f"{row.tls_version} verified"
