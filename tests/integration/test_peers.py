"""Self-tests of the test peers: each scripted behaviour, seen through a real client.

The rest of the suite trusts these servers to behave as their scripts say; these tests pin
that down with dnspython, smtplib and aiosmtplib, the way bulkmail will talk to them.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl

import aiosmtplib
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.peers.smtp import Script, SmtpServer, free_port

MESSAGE = b"From: a@example.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


# --- DNS ----------------------------------------------------------------------------------


def test_a_and_aaaa_records_resolve(dns_zone, dns_resolver):
    dns_zone.add("mx1.example.test", "A", "127.0.0.2")
    dns_zone.add("mx1.example.test", "A", "127.0.0.3")
    dns_zone.add("mx1.example.test", "AAAA", "::1")
    a = dns_resolver.resolve("mx1.example.test", "A")
    aaaa = dns_resolver.resolve("mx1.example.test", "AAAA")
    assert sorted(r.address for r in a) == ["127.0.0.2", "127.0.0.3"]
    assert [r.address for r in aaaa] == ["::1"]


def test_mx_records_keep_preference_and_names_ignore_case(dns_zone, dns_resolver):
    dns_zone.add("Example.TEST", "MX", "10 mx1.example.test.")
    dns_zone.add("example.test.", "MX", "20 mx2.example.test")
    answer = dns_resolver.resolve("EXAMPLE.test", "MX")
    pairs = sorted((r.preference, r.exchange.to_text()) for r in answer)
    assert pairs == [(10, "mx1.example.test."), (20, "mx2.example.test.")]


def test_null_mx_is_served_as_preference_zero_root(dns_zone, dns_resolver):
    dns_zone.add("nomail.test", "MX", "0 .")
    [record] = dns_resolver.resolve("nomail.test", "MX")
    assert (record.preference, record.exchange.to_text()) == (0, ".")


def test_unknown_name_is_nxdomain(dns_server, dns_resolver):
    with pytest.raises(dns.resolver.NXDOMAIN):
        dns_resolver.resolve("missing.test", "MX")


def test_known_name_without_that_type_is_nodata(dns_zone, dns_resolver):
    dns_zone.add("example.test", "A", "127.0.0.2")
    with pytest.raises(dns.resolver.NoAnswer):
        dns_resolver.resolve("example.test", "MX")


def test_name_with_only_names_below_it_is_nodata_not_nxdomain(dns_zone, dns_resolver):
    dns_zone.add("sel._domainkey.example.test", "TXT", "v=DKIM1; p=")
    with pytest.raises(dns.resolver.NoAnswer):
        dns_resolver.resolve("_domainkey.example.test", "TXT")


def test_servfail_name_fails_every_type(dns_zone, dns_server):
    dns_zone.add("broken.test", "A", "127.0.0.2")
    dns_zone.servfail("Broken.test")
    for rtype in ("A", "MX"):
        query = dns.message.make_query("broken.test", rtype)
        reply = dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=2)
        assert reply.rcode() == dns.rcode.SERVFAIL


def test_timeout_name_is_never_answered_over_udp_or_tcp(dns_zone, dns_server, dns_resolver):
    dns_zone.timeout("slow.test")
    query = dns.message.make_query("slow.test", "MX")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=0.2)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, dns_server.host, port=dns_server.port, timeout=0.2)
    dns_resolver.lifetime = 0.3
    with pytest.raises(dns.resolver.LifetimeTimeout):
        dns_resolver.resolve("slow.test", "MX")


def test_txt_list_is_one_record_of_several_strings(dns_zone, dns_resolver):
    dns_zone.add("sel._domainkey.example.test", "TXT", ["v=DKIM1; k=rsa; p=ABC", "DEF"])
    [record] = dns_resolver.resolve("sel._domainkey.example.test", "TXT")
    assert record.strings == (b"v=DKIM1; k=rsa; p=ABC", b"DEF")


def test_long_txt_string_is_cut_into_255_byte_strings(dns_zone, dns_resolver):
    value = "v=DKIM1; k=rsa; p=" + "A" * 400
    dns_zone.add("sel._domainkey.example.test", "TXT", value)
    [record] = dns_resolver.resolve("sel._domainkey.example.test", "TXT")
    assert [len(s) for s in record.strings] == [255, len(value) - 255]
    assert b"".join(record.strings) == value.encode()


def test_large_udp_answer_is_truncated_and_complete_over_tcp(dns_zone, dns_server):
    for n in range(3):
        dns_zone.add("big.test", "TXT", [f"{n}" * 250, "x" * 250])
    query = dns.message.make_query("big.test", "TXT", use_edns=False)
    over_udp = dns.query.udp(query, dns_server.host, port=dns_server.port, timeout=2)
    over_tcp = dns.query.tcp(query, dns_server.host, port=dns_server.port, timeout=2)
    assert over_udp.flags & dns.flags.TC and not over_udp.answer
    assert len(over_tcp.answer[0]) == 3


def test_add_ptr_serves_reverse_names_for_ipv4_and_ipv6(dns_zone, dns_resolver):
    dns_zone.add_ptr("127.0.0.2", "mx1.example.test")
    dns_zone.add_ptr("2001:db8::25", "mx6.example.test.")
    v4 = dns_resolver.resolve_address("127.0.0.2")
    v6 = dns_resolver.resolve_address("2001:db8::25")
    assert [r.target.to_text() for r in v4] == ["mx1.example.test."]
    assert [r.target.to_text() for r in v6] == ["mx6.example.test."]


def test_ttl_is_per_record_with_zone_default(dns_server, dns_resolver):
    zone: Zone = dns_server.zone
    zone.add("short.test", "A", "127.0.0.2", ttl=60)
    zone.add("default.test", "A", "127.0.0.2")
    assert dns_resolver.resolve("short.test", "A").rrset.ttl == 60
    assert dns_resolver.resolve("default.test", "A").rrset.ttl == 300


def test_cname_is_followed_inside_the_zone(dns_zone, dns_resolver):
    dns_zone.add("mail.example.test", "CNAME", "mx1.example.test")
    dns_zone.add("mx1.example.test", "A", "127.0.0.2")
    answer = dns_resolver.resolve("mail.example.test", "A")
    assert answer.canonical_name.to_text() == "mx1.example.test."
    assert [r.address for r in answer] == ["127.0.0.2"]


def test_zone_changes_apply_while_serving(dns_zone, dns_resolver):
    dns_zone.add("example.test", "MX", "10 mx1.example.test.")
    dns_zone.add("example.test", "A", "127.0.0.2")
    assert len(dns_resolver.resolve("example.test", "MX")) == 1
    dns_zone.remove("example.test", "MX")
    with pytest.raises(dns.resolver.NoAnswer):
        dns_resolver.resolve("example.test", "MX")
    dns_zone.remove("example.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        dns_resolver.resolve("example.test", "A")


def test_queries_are_logged_lowercase_without_trailing_dot(dns_zone, dns_server, dns_resolver):
    dns_zone.add("example.test", "MX", "10 mx1.example.test.")
    dns_resolver.resolve("Example.Test.", "MX")
    with pytest.raises(dns.resolver.NXDOMAIN):
        dns_resolver.resolve("missing.test", "A")
    assert dns_server.queries == [("example.test", "MX"), ("missing.test", "A")]


@pytest.mark.parametrize(
    ("rtype", "value"),
    [
        ("MX", "mx1.example.test"),
        ("A", "not-an-ip"),
        ("AAAA", "127.0.0.1"),
        ("SRV", "x"),
        ("TXT", ["x" * 256]),
    ],
)
def test_bad_record_values_are_refused(rtype, value):
    with pytest.raises(ValueError):
        Zone().add("example.test", rtype, value)


def test_stopped_server_releases_its_port():
    zone = Zone()
    zone.add("example.test", "A", "127.0.0.2")
    with DnsServer(zone) as first:
        port = first.port
    with DnsServer(zone, port=port) as second:
        query = dns.message.make_query("example.test", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=second.port, timeout=2)
    assert reply.answer[0][0].address == "127.0.0.2"


# --- SMTP ---------------------------------------------------------------------------------


def send(server: SmtpServer, rcpts: list[str], data: bytes = MESSAGE) -> dict:
    """One transaction with smtplib; returns the refused recipients."""
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        return client.sendmail("sender@example.test", rcpts, data)


def test_accepted_message_keeps_the_exact_bytes_received(smtp_server):
    server = smtp_server()
    data = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\ntrailing spaces  \r\n"
    send(server, ["b@example.org"], data)
    [received] = server.messages
    assert received.data == data  # smtplib dot-stuffs; the server unstuffs; CRLF kept
    assert (received.mail_from, received.rcpt_tos) == ("sender@example.test", ["b@example.org"])
    assert (received.peer_ip, received.tls, received.authenticated) == ("127.0.0.1", False, None)


def test_rcpt_replies_refuse_listed_addresses_only(smtp_server):
    script = Script(rcpt_replies={"gone@example.org": "550 5.1.1 No such user"})
    server = smtp_server(script=script)
    refused = send(server, ["Gone@example.org", "here@example.org"])
    assert refused == {"Gone@example.org": (550, b"5.1.1 No such user")}
    assert server.messages[0].rcpt_tos == ["here@example.org"]


def test_greylist_defers_the_first_rcpt_of_each_address(smtp_server):
    server = smtp_server(script=Script(greylist=True))
    with pytest.raises(smtplib.SMTPRecipientsRefused) as first:
        send(server, ["b@example.org"])
    assert first.value.recipients["b@example.org"][0] == 451
    send(server, ["b@example.org"])
    assert len(server.messages) == 1


def test_data_reply_replaces_250_and_refused_message_is_not_recorded(smtp_server):
    server = smtp_server(script=Script(data_reply="552 5.3.4 Message too big"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server, ["b@example.org"])
    assert refused.value.smtp_code == 552
    assert server.messages == []


def test_drop_during_data_hangs_up_before_replying_to_the_dot(smtp_server):
    server = smtp_server(script=Script(drop_during_data=True))
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(server, ["b@example.org"])
    assert server.messages == []
    assert [m.data for m in server.dropped] == [MESSAGE]


def test_mail_reply_refuses_the_sender(smtp_server):
    server = smtp_server(script=Script(mail_reply="451 4.3.0 Try later"))
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(server, ["b@example.org"])
    assert refused.value.smtp_code == 451


def test_greeting_reply_refuses_the_session(smtp_server):
    server = smtp_server(script=Script(greeting_reply="554 5.7.1 go away"))
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(server.host, server.port, timeout=5)
    assert refused.value.smtp_code == 554
    assert server.wait_idle(5)


def test_delay_holds_the_reply_to_the_dot_but_queues_the_message(smtp_server):
    server = smtp_server(script=Script(delay=5.0))

    async def send_impatiently() -> None:
        async with aiosmtplib.SMTP(hostname=server.host, port=server.port) as client:
            await client.sendmail("a@example.test", ["b@example.org"], MESSAGE, timeout=0.2)

    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        asyncio.run(send_impatiently())
    assert len(server.messages) == 1  # as with a real MTA: a timed-out client may duplicate


def test_smtputf8_is_advertised_unless_disabled(smtp_server):
    with_utf8, without = smtp_server(), smtp_server(script=Script(smtputf8=False))
    for server, expected in ((with_utf8, True), (without, False)):
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.ehlo()
            assert client.has_extn("smtputf8") is expected
    with smtplib.SMTP(without.host, without.port, timeout=5) as client:
        client.ehlo()
        code, _ = client.docmd("MAIL FROM:<a@example.test> SMTPUTF8")
        assert code == 501


def test_starttls_verifies_against_the_test_ca(smtp_server, tls_server_context, tls_client_context):
    server = smtp_server(starttls_context=tls_server_context())
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=tls_client_context)  # verifies the 127.0.0.1 address SAN
        client.sendmail("a@example.test", ["b@example.org"], MESSAGE)
    assert server.messages[0].tls is True


def test_starttls_certificate_names_an_mx_host_on_its_own_address(
    smtp_server, tls_server_context, tls_client_context
):
    server = smtp_server(host="127.0.0.2", starttls_context=tls_server_context())

    async def deliver() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.2", port=server.port, start_tls=False)
        async with client:
            await client.starttls(
                server_hostname="mx1.example.test", tls_context=tls_client_context
            )
            await client.sendmail("a@example.test", ["b@example.org"], MESSAGE)

    asyncio.run(deliver())
    assert server.messages[0].tls is True


def test_starttls_with_a_certificate_for_another_name_fails_verification(
    smtp_server, tls_server_context, tls_client_context
):
    server = smtp_server(starttls_context=tls_server_context("other.test"))
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=tls_client_context)


def test_implicit_tls_speaks_tls_from_the_first_byte(
    smtp_server, tls_server_context, tls_client_context
):
    server = smtp_server(implicit_tls_context=tls_server_context())
    with smtplib.SMTP_SSL(
        server.host, server.port, context=tls_client_context, timeout=5
    ) as client:
        client.sendmail("a@example.test", ["b@example.org"], MESSAGE)
    assert server.messages[0].tls is True
    with socket.create_connection((server.host, server.port), timeout=5) as plain:
        plain.sendall(b"EHLO client.test\r\n")  # not a TLS ClientHello: no SMTP for it
        assert not plain.makefile("rb").read().startswith(b"220")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_accepts_the_right_password_after_starttls(
    smtp_server, tls_server_context, tls_client_context, mechanism
):
    server = smtp_server(starttls_context=tls_server_context(), auth={"relay": "s3cret"})
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=tls_client_context)
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        client.user, client.password = "relay", "s3cret"
        authenticator = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, authenticator)
        assert code == 235
        client.sendmail("a@example.test", ["b@example.org"], MESSAGE)
    assert server.messages[0].authenticated == "relay"


def test_auth_refuses_a_wrong_password(smtp_server, tls_server_context, tls_client_context):
    server = smtp_server(starttls_context=tls_server_context(), auth={"relay": "s3cret"})
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=tls_client_context)
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("relay", "wrong")
    assert refused.value.smtp_code == 535


def test_auth_is_offered_only_over_tls_and_only_when_configured(
    smtp_server, tls_server_context, tls_client_context
):
    with_auth = smtp_server(starttls_context=tls_server_context(), auth={"u": "p"})
    without_auth = smtp_server(starttls_context=tls_server_context())
    with smtplib.SMTP(with_auth.host, with_auth.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("auth")
    with smtplib.SMTP(without_auth.host, without_auth.port, timeout=5) as client:
        client.starttls(context=tls_client_context)
        client.ehlo()
        assert not client.has_extn("auth")


def test_mail_needs_auth_when_the_server_has_users(
    smtp_server, tls_server_context, tls_client_context
):
    server = smtp_server(starttls_context=tls_server_context(), auth={"u": "p"})
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=tls_client_context)
        client.ehlo()
        assert client.mail("a@example.test")[0] == 530


def test_require_tls_refuses_mail_before_starttls(smtp_server, tls_server_context):
    server = smtp_server(starttls_context=tls_server_context(), require_tls=True)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.mail("a@example.test")[0] == 530


def test_maildir_receives_one_numbered_eml_file_per_message(smtp_server, tmp_path):
    server = smtp_server(maildir=tmp_path / "inbox")
    send(server, ["b@example.org"])
    send(server, ["c@example.org"], MESSAGE.replace(b"hi", b"two"))
    files = sorted((tmp_path / "inbox").iterdir())
    assert [f.name for f in files] == ["127.0.0.1-00001.eml", "127.0.0.1-00002.eml"]
    assert files[1].read_bytes() == MESSAGE.replace(b"hi", b"two")


def test_sessions_are_counted_at_the_server(smtp_server):
    server = smtp_server()
    clients = [smtplib.SMTP(server.host, server.port, timeout=5) for _ in range(3)]
    assert (server.sessions_now, server.max_concurrent_sessions) == (3, 3)
    for client in clients:
        client.quit()
    assert server.wait_idle(5)
    assert (server.sessions_total, server.sessions_now, server.max_concurrent_sessions) == (3, 0, 3)


def test_servers_on_several_loopback_addresses_share_one_port(smtp_server):
    port = free_port(["127.0.0.2", "127.0.0.3"])
    mx1 = smtp_server(host="127.0.0.2", port=port)
    mx2 = smtp_server(host="127.0.0.3", port=port, script=Script(mail_reply="421 4.3.2 busy"))
    send(mx1, ["b@example.org"])
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(mx2, ["b@example.org"])
    assert (len(mx1.messages), len(mx2.messages)) == (1, 0)


def test_wait_for_reports_a_timeout(smtp_server):
    server = smtp_server()
    assert server.wait_for(1, timeout=0.05) is False
    send(server, ["b@example.org"])
    assert server.wait_for(1, timeout=5) is True


def test_stop_closes_open_sessions_and_releases_the_port():
    server = SmtpServer().start()
    client = smtplib.SMTP(server.host, server.port, timeout=5)
    server.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.ehlo()
    client.close()
    with socket.create_server((server.host, server.port)):
        pass


def test_auth_without_any_tls_is_refused_at_construction():
    with pytest.raises(ValueError):
        SmtpServer(auth={"relay": "s3cret"})
