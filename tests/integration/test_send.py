"""End-to-end sends against real servers on loopback: routing, replies, retries, limits, DKIM."""

from __future__ import annotations

import json
import time

import dkim
import pytest

from bulkmail.peers.smtp import Script
from tests.integration.world import SENDING_DOMAIN, World
from tests.tools import require


def addresses(domain: str, n: int) -> list[str]:
    return [f"user{i}@{domain}" for i in range(n)]


def test_every_subscriber_gets_one_message_across_domains(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.mx("b.test", (10, "127.0.0.3"))
    people = addresses("a.test", 15) + addresses("b.test", 15)
    world.subscribers(people)
    cid = world.campaign()
    report = world.send(cid)
    assert report.state == "finished"
    assert report.counts["sent"] == 30
    assert world.recipients_received() == sorted(people)
    states = world.states(cid)
    assert {d.state for d in states.values()} == {"sent"}
    assert states["user0@a.test"].mx_host == f"mx-127-0-0-2.{SENDING_DOMAIN}"
    assert states["user0@a.test"].last_code == 250


def test_lower_preference_mx_is_used_first(world: World) -> None:
    world.mx("a.test", (20, "127.0.0.3"), (10, "127.0.0.2"))
    world.subscribers(addresses("a.test", 5))
    world.send(world.campaign())
    assert len(world.servers["127.0.0.2"].messages) == 5
    assert world.servers["127.0.0.3"].messages == []


def test_next_mx_is_tried_when_the_first_refuses_connections(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"), serve=False)  # nothing listens on .2
    world.mx("a.test", (20, "127.0.0.3"))
    world.subscribers(addresses("a.test", 5))
    cid = world.campaign()
    world.send(cid)
    assert len(world.servers["127.0.0.3"].messages) == 5
    assert {d.state for d in world.states(cid).values()} == {"sent"}


def test_equal_preference_hosts_share_the_load(world: World) -> None:
    world.configure("limits.default", messages_per_connection=1, connections=2)
    world.mx("a.test", (10, "127.0.0.2"), (10, "127.0.0.3"))
    world.subscribers(addresses("a.test", 40))
    world.send(world.campaign())
    counts = [len(world.servers[ip].messages) for ip in ("127.0.0.2", "127.0.0.3")]
    assert sum(counts) == 40
    assert min(counts) >= 5, counts  # shuffled per connection, not always the first


def test_a_domain_without_mx_is_delivered_to_its_address(world: World) -> None:
    world.zone.add("plain.test", "A", "127.0.0.4")
    world.server("127.0.0.4")
    world.subscribers(addresses("plain.test", 3))
    cid = world.campaign()
    world.send(cid)
    assert len(world.servers["127.0.0.4"].messages) == 3


def test_null_mx_and_nxdomain_bounce_without_connecting(world: World) -> None:
    world.zone.add("nullmx.test", "MX", "0 .")
    world.server("127.0.0.2")
    world.zone.add("nullmx.test", "A", "127.0.0.2")  # must not be used
    world.subscribers(["a@nullmx.test", "b@missing.test"])
    cid = world.campaign()
    world.send(cid)
    states = world.states(cid)
    assert (states["a@nullmx.test"].state, states["a@nullmx.test"].last_enhanced) == (
        "bounced",
        "5.1.10",
    )
    assert (states["b@missing.test"].state, states["b@missing.test"].last_enhanced) == (
        "bounced",
        "5.1.2",
    )
    assert world.servers["127.0.0.2"].sessions_total == 0


def test_servfail_defers(world: World) -> None:
    world.zone.servfail("broken.test")
    world.subscribers(["a@broken.test"])
    cid = world.campaign()
    report = world.send(cid)
    d = world.states(cid)["a@broken.test"]
    assert d.state == "deferred" and d.last_code == 451
    assert report.state == "running"  # not finished while a delivery is deferred


def test_greylisting_ends_sent_after_a_retry(world: World) -> None:
    world.mx("grey.test", (10, "127.0.0.2"), script=Script(greylist=True))
    world.subscribers(addresses("grey.test", 3))
    cid = world.campaign()
    report = world.send(cid, wait=True)
    assert report.state == "finished"
    states = world.states(cid)
    assert {d.state for d in states.values()} == {"sent"}
    assert {d.attempts for d in states.values()} == {2}
    events = world.sql(
        "SELECT kind, code, enhanced, attempt FROM events WHERE campaign_id = :c", c=cid
    )
    assert (
        sorted(tuple(e) for e in events)
        == [("deferred", 451, "4.7.1", 1)] * 3 + [("sent", 250, "2.0.0", 2)] * 3
    )


def test_unknown_user_bounces_and_is_suppressed_policy_block_is_not(world: World) -> None:
    world.mx(
        "a.test",
        (10, "127.0.0.2"),
        script=Script(
            rcpt_replies={
                "gone@a.test": "550 5.1.1 No such user",
                "blocked@a.test": "550 5.7.1 Rejected by policy",
            }
        ),
    )
    world.subscribers(["gone@a.test", "blocked@a.test", "fine@a.test"])
    cid = world.campaign()
    world.send(cid)
    states = world.states(cid)
    assert states["gone@a.test"].state == "bounced"
    assert states["blocked@a.test"].state == "bounced"
    assert states["fine@a.test"].state == "sent"
    assert [r[0] for r in world.sql("SELECT email FROM suppressions")] == ["gone@a.test"]
    # the next campaign to the list skips the suppressed address
    cid2 = world.campaign()
    world.send(cid2)
    assert world.states(cid2)["gone@a.test"].state == "skipped"


def test_a_connection_dropped_during_data_is_retried_not_recorded_sent(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"), script=Script(drop_during_data=True))
    world.subscribers(["x@a.test"])
    cid = world.campaign()
    world.send(cid)
    d = world.states(cid)["x@a.test"]
    assert d.state == "deferred"
    world.server("127.0.0.2")  # now it behaves
    world.sql("UPDATE deliveries SET next_attempt_at = 0")
    world.send(cid)
    assert world.states(cid)["x@a.test"].state == "sent"


def test_site_connections_are_never_exceeded(world: World) -> None:
    world.configure("limits.default", connections=3, messages_per_connection=5)
    world.mx("a.test", (10, "127.0.0.2"), script=Script(delay=0.01))
    world.mx("b.test", (10, "127.0.0.2"))  # same MX: same site, same limit
    world.subscribers(addresses("a.test", 60) + addresses("b.test", 60))
    world.send(world.campaign())
    server = world.servers["127.0.0.2"]
    assert len(server.messages) == 120
    assert server.max_concurrent_sessions == 3


def test_site_rate_is_held(world: World) -> None:
    world.configure("limits.default", connections=4, rate=40)
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(addresses("a.test", 60))
    cid = world.campaign()
    before = time.monotonic()  # the servers' clock; no slot can be booked before this
    world.send(cid)
    times = sorted(m.at for m in world.servers["127.0.0.2"].messages)
    assert len(times) == 60
    # The limiter books one slot every 1/40 s and a message reaches the server only after its
    # slot, so the k-th arrival can come no sooner than k/40 s after the start. A loaded
    # machine only makes it later: this holds at any load. (Exactness of the long-run rate is
    # pinned with a fake clock in tests/unit/test_throttle.py.)
    early = [(k, t - before) for k, t in enumerate(times) if t - before < k / 40 - 1e-3]
    assert early == [], early[:5]
    assert times[-1] - before < 59 / 40 + 30  # paced, not stalled (generous: any load)


def test_every_delivered_message_verifies_with_dkimpy(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(addresses("a.test", 10))
    world.send(world.campaign())

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port = ["127.0.0.1"], world.dns.port
        answer = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    messages = world.servers["127.0.0.2"].messages
    assert len(messages) == 10
    for m in messages:
        assert m.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(m.data, dnsfunc=dnsfunc), m.rcpt_tos
        assert not dkim.verify(m.data.replace(b"Hello", b"Hallo", 1), dnsfunc=dnsfunc)


def test_envelope_sender_is_verp_and_status_json_matches(world: World) -> None:
    from click.testing import CliRunner

    from bulkmail.cli.main import cli

    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(addresses("a.test", 2))
    cid = world.campaign()
    world.send(cid)
    for m in world.servers["127.0.0.2"].messages:
        assert m.mail_from.startswith("bounces+") and m.mail_from.endswith(
            f"@bounces.{SENDING_DOMAIN}"
        )
    out = CliRunner().invoke(
        cli, ["--config", str(world.config_path()), "campaigns", "status", str(cid), "--json"]
    )
    data = json.loads(out.output)
    assert (data["state"], data["total"], data["sent"]) == ("finished", 2, 2)


@pytest.mark.parametrize("mode", ["opportunistic", "required"])
def test_starttls_is_used_and_recorded(
    world: World,
    tls_server_context,
    tls_ca,  # type: ignore[no-untyped-def]
    mode: str,
) -> None:
    ca = world.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    world.configure("sender", tls=mode, ca_file=str(ca))
    world.mx(
        "a.test",
        (10, "127.0.0.2"),
        starttls_context=tls_server_context(f"mx-127-0-0-2.{SENDING_DOMAIN}"),
    )
    world.subscribers(addresses("a.test", 3))
    cid = world.campaign()
    world.send(cid)
    assert all(m.tls for m in world.servers["127.0.0.2"].messages)
    assert {d.tls.split()[-1] for d in world.states(cid).values()} == {"verified"}


def test_required_tls_defers_when_starttls_is_missing(world: World) -> None:
    world.configure("sender", tls="required")
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(addresses("a.test", 2))
    cid = world.campaign()
    world.send(cid)
    assert world.servers["127.0.0.2"].messages == []
    assert {d.state for d in world.states(cid).values()} == {"deferred"}


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_relay_mode_authenticates_and_sends_everything_through_the_smart_host(
    world: World, tls_server_context, tls_ca, monkeypatch, security: str
) -> None:  # type: ignore[no-untyped-def]
    ca = world.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    context = tls_server_context()
    relay = world.server(
        "127.0.0.9",
        auth={"news": "correct horse"},
        **(
            {"starttls_context": context}
            if security == "starttls"
            else {"implicit_tls_context": context}
        ),
    )
    monkeypatch.setenv("BULKMAIL_RELAY_PASSWORD", "correct horse")
    world.configure("sender", mode="relay")
    world.configure(
        "relay",
        host="127.0.0.9",
        port=world.port,
        security=security,
        username="news",
        ca_file=str(ca),
    )
    world.subscribers(addresses("far.test", 3) + addresses("away.test", 2))  # no DNS needed
    cid = world.campaign()
    assert world.send(cid).state == "finished"
    assert len(relay.messages) == 5
    assert all(m.tls and m.authenticated == "news" for m in relay.messages)


def test_bad_relay_credentials_stop_the_send_without_bouncing_anyone(
    world: World, tls_server_context, tls_ca, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from bulkmail.errors import AuthenticationError

    ca = world.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    world.server("127.0.0.9", auth={"news": "correct horse"}, starttls_context=tls_server_context())
    monkeypatch.setenv("BULKMAIL_RELAY_PASSWORD", "wrong-password-123")
    world.configure("sender", mode="relay")
    world.configure("relay", host="127.0.0.9", port=world.port, username="news", ca_file=str(ca))
    world.subscribers(addresses("far.test", 20))
    cid = world.campaign()
    with pytest.raises(AuthenticationError) as err:
        world.send(cid)
    assert "wrong-password-123" not in str(err.value)
    states = {d.state for d in world.states(cid).values()}
    assert states <= {"queued", "deferred"}, states  # nobody bounced, nothing stuck in sending


def test_non_ascii_address_needs_smtputf8(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"), script=Script(smtputf8=False))
    world.mx("b.test", (10, "127.0.0.3"))
    world.subscribers(["josé@a.test", "josé@b.test", "plain@a.test"])
    cid = world.campaign()
    world.send(cid)
    states = world.states(cid)
    assert (states["josé@a.test"].state, states["josé@a.test"].last_enhanced) == (
        "bounced",
        "5.6.7",
    )
    assert states["josé@b.test"].state == "sent"
    assert states["plain@a.test"].state == "sent"
    assert [m.rcpt_tos for m in world.servers["127.0.0.3"].messages] == [["josé@b.test"]]


def test_delivered_messages_verify_with_mail_dkim(world: World) -> None:
    """The independent verifier (Perl Mail::DKIM) reads the key from the loopback DNS server."""
    import shutil
    import subprocess

    if (
        shutil.which("perl") is None
        or subprocess.run(["perl", "-MMail::DKIM::Verifier", "-e1"], capture_output=True).returncode
    ):
        require(False, "Perl Mail::DKIM (libmail-dkim-perl)")
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(addresses("a.test", 5))
    world.send(world.campaign())
    script = f"""
use Mail::DKIM::Verifier; use Net::DNS::Resolver;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'],
                                                  port => {world.dns.port}, recurse => 0));
local $/; my $msg = <STDIN>; $msg =~ s/\\r?\\n/\\r\\n/g;
my $v = Mail::DKIM::Verifier->new(); $v->PRINT($msg); $v->CLOSE();
print $v->result, "\\n";
"""
    for m in world.servers["127.0.0.2"].messages:
        out = subprocess.run(["perl", "-e", script], input=m.data, capture_output=True, timeout=30)
        assert out.stdout.decode().strip() == "pass", out.stderr.decode()
