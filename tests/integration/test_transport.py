"""The SMTP transport against real SMTP servers on loopback (bulkmail.peers.smtp).

Each test starts its servers with the behaviour it needs (a Script, TLS, AUTH) and drives a
Connector / Session on its own event loop. Timeouts are short so a broken case fails fast.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from bulkmail.delivery.routing import MxHost
from bulkmail.delivery.transport import (
    Connector,
    Outcome,
    RelaySettings,
    Session,
    Timeouts,
    TransportSettings,
)
from bulkmail.errors import AuthenticationError, ConfigError, RelayError
from bulkmail.peers.smtp import Script, SmtpServer, free_port

T = TypeVar("T")
FAST = Timeouts(
    connect=2, greeting=5, mail=5, rcpt=5, data_init=5, data_block=5, data_end=5, session=60
)
MESSAGE = (
    b"From: news@sender.example\r\nTo: someone@example.test\r\nSubject: hello\r\n\r\n"
    b"Hello,\r\n.a line that starts with a dot\r\n..and two\r\nbye\r\n"
)
SENDER = "bounce+42@sender.example"
PASSWORD = "Tr0ub4dor&3-not-in-logs"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings(port: int, **kwargs: Any) -> TransportSettings:
    return TransportSettings(helo="out.sender.example", port=port, timeouts=FAST, **kwargs)


def mx(name: str, *addresses: str, preference: int = 10) -> MxHost:
    return MxHost(name, preference, addresses)


async def open_session(connector: Connector, *hosts: MxHost) -> Session:
    opened = await connector.open(hosts)
    assert isinstance(opened, Session), opened
    return opened


async def send_one(
    connector: Connector,
    hosts: list[MxHost],
    recipient: str = "a@example.test",
    data: bytes = MESSAGE,
) -> tuple[Session | Outcome, Outcome | None]:
    """Open, send one message if a session opened, close. (opened, outcome of the send)."""
    opened = await connector.open(hosts)
    if not isinstance(opened, Session):
        return opened, None
    try:
        return opened, await opened.send(SENDER, recipient, data)
    finally:
        await opened.close()


@pytest.fixture(scope="module")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


ServerFactory = Callable[..., SmtpServer]
ContextFactory = Callable[..., ssl.SSLContext]


# -- plain delivery and session reuse ------------------------------------------------------


def test_plain_send_delivers_the_exact_bytes(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")
    opened, outcome = run(
        send_one(Connector(settings(server.port)), [mx("mx1.example.test", "127.0.0.1")])
    )
    assert outcome is not None and outcome.reply.code == 250
    assert (outcome.stage, outcome.delivered_possible, outcome.mx_host) == (
        "dot",
        False,
        "mx1.example.test",
    )
    assert outcome.tls is not None and not outcome.tls.used
    assert server.wait_for(1)
    received = server.messages[0]
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["a@example.test"])
    assert received.data == MESSAGE


def test_bare_line_feeds_are_sent_as_crlf(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")
    _, outcome = run(
        send_one(
            Connector(settings(server.port)),
            [mx("mx1.example.test", "127.0.0.1")],
            data=b"Subject: x\n\n.\nok",
        )
    )
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1)
    assert server.messages[0].data == b"Subject: x\r\n\r\n.\r\nok\r\n"


def test_one_session_carries_many_messages(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")

    async def scenario() -> list[Outcome]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        outcomes = [await session.send(SENDER, f"user{n}@example.test", MESSAGE) for n in range(25)]
        assert session.messages_sent == 25 and session.alive()
        await session.close()
        assert not session.alive()
        return outcomes

    outcomes = run(scenario())
    assert [o.reply.code for o in outcomes] == [250] * 25
    assert server.wait_for(25)
    assert server.sessions_total == 1
    assert [m.rcpt_tos[0] for m in server.messages] == [f"user{n}@example.test" for n in range(25)]


def test_session_cap_ends_a_session(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")
    capped = TransportSettings(
        helo="out.sender.example",
        port=server.port,
        timeouts=Timeouts(connect=2, greeting=5, session=0.2),
    )

    async def scenario() -> tuple[bool, bool, Outcome]:
        session = await open_session(Connector(capped), mx("mx1.example.test", "127.0.0.1"))
        before = session.alive()
        await asyncio.sleep(0.3)
        after = session.alive()
        outcome = await session.send(SENDER, "a@example.test", MESSAGE)
        await session.close()
        return before, after, outcome

    before, after, outcome = run(scenario())
    assert before and not after
    assert outcome.reply.enhanced == "4.4.2" and outcome.stage == "mail"
    assert server.messages == []


# -- choosing a host -----------------------------------------------------------------------


def test_refused_first_host_falls_back_to_the_second_host(smtp_server: ServerFactory) -> None:
    port = free_port(("127.0.0.2", "127.0.0.3"))
    server = smtp_server("127.0.0.3", port)  # nothing listens on 127.0.0.2
    hosts = [mx("mx1.example.test", "127.0.0.2"), mx("mx2.example.test", "127.0.0.3")]
    opened, outcome = run(send_one(Connector(settings(port)), hosts))
    assert isinstance(opened, Session)
    assert (opened.mx_host, opened.address) == ("mx2.example.test", "127.0.0.3")
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1)


def test_second_address_of_the_same_host_is_tried(smtp_server: ServerFactory) -> None:
    port = free_port(("127.0.0.2", "127.0.0.3"))
    smtp_server("127.0.0.3", port)
    opened, outcome = run(
        send_one(Connector(settings(port)), [mx("mx1.example.test", "127.0.0.2", "127.0.0.3")])
    )
    assert isinstance(opened, Session)
    assert (opened.mx_host, opened.address) == ("mx1.example.test", "127.0.0.3")
    assert outcome is not None and outcome.reply.code == 250


def test_no_host_answering_defers_with_4_4_1() -> None:
    port = free_port(("127.0.0.2", "127.0.0.3"))
    hosts = [mx("mx1.example.test", "127.0.0.2"), mx("mx2.example.test", "127.0.0.3")]
    opened = run(Connector(settings(port)).open(hosts))
    assert isinstance(opened, Outcome)
    assert (opened.reply.code, opened.reply.enhanced, opened.stage) == (451, "4.4.1", "connect")
    assert opened.mx_host == "mx2.example.test" and not opened.delivered_possible


def test_silent_server_times_out_at_the_greeting() -> None:
    with socket.create_server(("127.0.0.2", 0)) as listener:  # accepts TCP, never greets
        quick = TransportSettings(
            helo="out.sender.example",
            port=listener.getsockname()[1],
            timeouts=Timeouts(connect=2, greeting=0.3),
        )
        opened = run(Connector(quick).open([mx("mx1.example.test", "127.0.0.2")]))
    assert isinstance(opened, Outcome)
    assert (opened.reply.enhanced, opened.stage) == ("4.4.1", "greeting")
    assert "timed out" in opened.reply.text


def test_greeting_refusal_moves_on_and_is_reported_when_last(smtp_server: ServerFactory) -> None:
    port = free_port(("127.0.0.2", "127.0.0.3"))
    smtp_server("127.0.0.2", port, script=Script(greeting_reply="554 5.7.1 go away"))
    only_refusing = run(Connector(settings(port)).open([mx("mx1.example.test", "127.0.0.2")]))
    assert isinstance(only_refusing, Outcome)
    assert (only_refusing.reply.code, only_refusing.reply.enhanced) == (554, "5.7.1")
    assert only_refusing.stage == "greeting"

    good = smtp_server("127.0.0.3", port)
    hosts = [mx("mx1.example.test", "127.0.0.2"), mx("mx2.example.test", "127.0.0.3")]
    opened, outcome = run(send_one(Connector(settings(port)), hosts))
    assert isinstance(opened, Session) and opened.address == "127.0.0.3"
    assert outcome is not None and outcome.reply.code == 250
    assert good.wait_for(1)


# -- TLS policy for MX delivery ------------------------------------------------------------


def test_opportunistic_starttls_verifies_with_the_configured_ca(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context())
    opened, outcome = run(
        send_one(
            Connector(settings(server.port, ca_file=ca_file)), [mx("mx1.example.test", "127.0.0.1")]
        )
    )
    assert isinstance(opened, Session)
    assert opened.tls.used and opened.tls.verified
    assert opened.tls.version is not None and opened.tls.version.startswith("TLS")
    assert outcome is not None and outcome.reply.code == 250 and outcome.tls == opened.tls
    assert server.wait_for(1) and server.messages[0].tls


def test_opportunistic_starttls_without_trust_is_encrypted_but_unverified(
    smtp_server: ServerFactory, tls_server_context: ContextFactory
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context())
    connector = Connector(settings(server.port))
    hosts = [mx("mx1.example.test", "127.0.0.1")]
    opened, outcome = run(send_one(connector, hosts))
    assert isinstance(opened, Session)
    assert opened.tls.used and not opened.tls.verified
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1) and server.messages[0].tls
    assert server.sessions_total == 2  # the verifying attempt, then the one that sent

    again, _ = run(send_one(connector, hosts))  # remembered: no verifying attempt this time
    assert isinstance(again, Session) and again.tls.used and not again.tls.verified
    assert server.sessions_total == 3


def test_opportunistic_certificate_for_another_name_is_unverified(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context("other.example"))
    opened, _ = run(
        send_one(
            Connector(settings(server.port, ca_file=ca_file)), [mx("mx1.example.test", "127.0.0.1")]
        )
    )
    assert isinstance(opened, Session) and opened.tls.used and not opened.tls.verified


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_failed_handshake_falls_back_to_a_new_plaintext_connection(
    smtp_server: ServerFactory, tls_server_context: ContextFactory
) -> None:
    broken = tls_server_context()
    broken.maximum_version = ssl.TLSVersion.TLSv1_1  # no version the client accepts
    server = smtp_server("127.0.0.1", starttls_context=broken)
    opened, outcome = run(
        send_one(Connector(settings(server.port)), [mx("mx1.example.test", "127.0.0.1")])
    )
    assert isinstance(opened, Session) and not opened.tls.used
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1) and not server.messages[0].tls
    assert server.sessions_total == 2


def test_required_tls_without_starttls_defers_and_sends_nothing(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")
    opened = run(
        Connector(settings(server.port, tls="required")).open([mx("mx1.example.test", "127.0.0.1")])
    )
    assert isinstance(opened, Outcome)
    assert (opened.reply.code, opened.reply.enhanced, opened.stage) == (451, "4.7.5", "tls")
    assert server.messages == []


def test_required_tls_accepts_an_unverified_certificate(
    smtp_server: ServerFactory, tls_server_context: ContextFactory
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context())
    opened, outcome = run(
        send_one(
            Connector(settings(server.port, tls="required")), [mx("mx1.example.test", "127.0.0.1")]
        )
    )
    assert isinstance(opened, Session) and opened.tls.used and not opened.tls.verified
    assert outcome is not None and outcome.reply.code == 250


def test_tls_off_never_starts_tls(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    server = smtp_server("127.0.0.1", starttls_context=tls_server_context())
    opened, outcome = run(
        send_one(
            Connector(settings(server.port, tls="off", ca_file=ca_file)),
            [mx("mx1.example.test", "127.0.0.1")],
        )
    )
    assert isinstance(opened, Session) and not opened.tls.used
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1) and not server.messages[0].tls


# -- the smart host ------------------------------------------------------------------------


def relay_settings(
    port: int, security: str, password: str = PASSWORD, ca_file: str | None = None
) -> TransportSettings:
    relay = RelaySettings(
        host="127.0.0.1",
        port=port,
        security=security,
        username="news",
        password=password,
        ca_file=ca_file,
    )
    return settings(25, relay=relay)


UNUSED_MX = [mx("mx1.example.test", "127.0.0.9")]  # the relay mode must ignore it


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_relay_sends_over_verified_tls_after_auth(
    security: str, smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    context = {
        "starttls_context"
        if security == "starttls"
        else "implicit_tls_context": tls_server_context()
    }
    server = smtp_server("127.0.0.1", auth={"news": PASSWORD}, **context)
    opened, outcome = run(
        send_one(Connector(relay_settings(server.port, security, ca_file=ca_file)), UNUSED_MX)
    )
    assert isinstance(opened, Session) and opened.tls.used and opened.tls.verified
    assert opened.mx_host == "127.0.0.1"
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1)
    assert server.messages[0].authenticated == "news" and server.messages[0].tls


def test_relay_wrong_password_raises_without_the_password(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    server = smtp_server(
        "127.0.0.1", auth={"news": "the-right-one"}, starttls_context=tls_server_context()
    )
    config = relay_settings(server.port, "starttls", ca_file=ca_file)
    with pytest.raises(AuthenticationError) as caught:
        run(Connector(config).open(UNUSED_MX))
    err = caught.value
    assert f"127.0.0.1:{server.port}" in str(err) and "'news'" in str(err) and "535" in str(err)
    for text in (str(err), repr(err), repr(err.args), repr(config), repr(config.relay)):
        assert PASSWORD not in text
    assert err.__cause__ is None and err.__suppress_context__
    assert server.messages == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_relay_with_an_untrusted_certificate_stops_naming_ca_file_and_sends_nothing(
    security: str, smtp_server: ServerFactory, tls_server_context: ContextFactory
) -> None:
    context = "starttls_context" if security == "starttls" else "implicit_tls_context"
    server = smtp_server("127.0.0.1", auth={"news": PASSWORD}, **{context: tls_server_context()})
    with pytest.raises(RelayError) as caught:
        run(Connector(relay_settings(server.port, security)).open(UNUSED_MX))
    text = str(caught.value)
    assert text.startswith(f"relay 127.0.0.1:{server.port}: certificate not trusted"), text
    assert "relay.ca_file" in text and "\n" not in text
    assert not isinstance(caught.value, AuthenticationError)
    assert server.messages == []


def test_relay_password_variable_unset_is_named_not_reported_as_rejected(
    smtp_server: ServerFactory, tls_server_context: ContextFactory, ca_file: str
) -> None:
    server = smtp_server(
        "127.0.0.1", auth={"news": PASSWORD}, starttls_context=tls_server_context()
    )
    config = relay_settings(server.port, "starttls", ca_file=ca_file)
    unset = replace(config, relay=replace(config.relay, password=None, password_env="MY_PW"))
    with pytest.raises(RelayError) as caught:
        run(Connector(unset).open(UNUSED_MX))
    text = str(caught.value)
    assert f"relay 127.0.0.1:{server.port}: MY_PW is not set" in text, text
    assert "rejected" not in text and not isinstance(caught.value, AuthenticationError)
    assert server.messages == []


# -- replies within a session --------------------------------------------------------------


def test_refused_recipient_is_an_outcome_and_the_session_goes_on(
    smtp_server: ServerFactory,
) -> None:
    server = smtp_server(
        "127.0.0.1", script=Script(rcpt_replies={"gone@example.test": "550 5.1.1 No such user"})
    )

    async def scenario() -> tuple[Outcome, bool, Outcome]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        refused = await session.send(SENDER, "gone@example.test", MESSAGE)
        alive = session.alive()
        delivered = await session.send(SENDER, "here@example.test", MESSAGE)
        await session.close()
        return refused, alive, delivered

    refused, alive, delivered = run(scenario())
    assert (refused.reply.code, refused.reply.enhanced, refused.stage) == (550, "5.1.1", "rcpt")
    assert refused.reply.text == "No such user" and not refused.delivered_possible
    assert alive and delivered.reply.code == 250
    assert server.wait_for(1) and server.sessions_total == 1
    assert [m.rcpt_tos for m in server.messages] == [["here@example.test"]]


def test_greylisting_defers_then_accepts(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", script=Script(greylist=True))

    async def scenario() -> list[Outcome]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        outcomes = [await session.send(SENDER, "a@example.test", MESSAGE) for _ in range(2)]
        await session.close()
        return outcomes

    first, second = run(scenario())
    assert (first.reply.code, first.reply.enhanced, first.stage) == (451, "4.7.1", "rcpt")
    assert second.reply.code == 250
    assert server.wait_for(1) and len(server.messages) == 1


def test_refusals_at_mail_and_at_the_dot_are_outcomes(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", script=Script(mail_reply="452 4.3.1 Try later"))

    async def scenario() -> list[Outcome]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        at_mail = await session.send(SENDER, "a@example.test", MESSAGE)
        server.script = Script(data_reply="554 5.7.1 Spam detected")
        at_dot = await session.send(SENDER, "a@example.test", MESSAGE)
        server.script = Script()
        fine = await session.send(SENDER, "a@example.test", MESSAGE)
        await session.close()
        return [at_mail, at_dot, fine]

    at_mail, at_dot, fine = run(scenario())
    assert (at_mail.reply.code, at_mail.stage) == (452, "mail")
    assert (at_dot.reply.code, at_dot.reply.enhanced, at_dot.stage) == (554, "5.7.1", "dot")
    assert not at_dot.delivered_possible
    assert fine.reply.code == 250
    assert server.wait_for(1) and server.sessions_total == 1


def test_421_closing_reply_ends_the_session(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", script=Script(mail_reply="421 4.7.0 Too many messages"))

    async def scenario() -> tuple[Outcome, bool]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        outcome = await session.send(SENDER, "a@example.test", MESSAGE)
        alive = session.alive()
        await session.close()
        return outcome, alive

    outcome, alive = run(scenario())
    assert (outcome.reply.code, outcome.stage, outcome.delivered_possible) == (421, "mail", False)
    assert not alive


def test_drop_during_data_defers_as_possibly_delivered(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", script=Script(drop_during_data=True))

    async def scenario() -> tuple[Outcome, bool]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        outcome = await session.send(SENDER, "a@example.test", MESSAGE)
        alive = session.alive()
        await session.close()
        return outcome, alive

    outcome, alive = run(scenario())
    assert (outcome.reply.code, outcome.reply.enhanced, outcome.stage) == (451, "4.4.2", "dot")
    assert outcome.delivered_possible and not alive
    assert len(server.dropped) == 1 and server.messages == []


def test_no_answer_to_the_dot_times_out_as_possibly_delivered(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", script=Script(delay=2.0))
    slow = TransportSettings(
        helo="out.sender.example",
        port=server.port,
        timeouts=Timeouts(connect=2, greeting=5, data_end=0.3),
    )

    async def scenario() -> tuple[Outcome, bool]:
        session = await open_session(Connector(slow), mx("mx1.example.test", "127.0.0.1"))
        outcome = await session.send(SENDER, "a@example.test", MESSAGE)
        return outcome, session.alive()

    outcome, alive = run(scenario())
    assert (outcome.reply.enhanced, outcome.stage, outcome.delivered_possible) == (
        "4.4.2",
        "dot",
        True,
    )
    assert "timed out" in outcome.reply.text and not alive


def test_server_closing_an_idle_session_makes_it_not_alive(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")

    async def scenario() -> tuple[bool, bool, Outcome]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        before = session.alive()
        await asyncio.to_thread(server.stop)  # aborts every open session
        for _ in range(200):
            if not session.alive():
                break
            await asyncio.sleep(0.01)
        outcome = await session.send(SENDER, "a@example.test", MESSAGE)
        await session.close()  # must not raise on a dead connection
        return before, session.alive(), outcome

    before, after, outcome = run(scenario())
    assert before and not after
    assert (outcome.reply.enhanced, outcome.stage, outcome.delivered_possible) == (
        "4.4.2",
        "mail",
        False,
    )


# -- refused before sending ----------------------------------------------------------------


def test_utf8_recipient_without_smtputf8_fails_without_sending(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", script=Script(smtputf8=False))

    async def scenario() -> tuple[Outcome, Outcome]:
        session = await open_session(
            Connector(settings(server.port)), mx("mx1.example.test", "127.0.0.1")
        )
        assert not session.smtputf8
        refused = await session.send(SENDER, "jörg@example.test", MESSAGE)
        fine = await session.send(SENDER, "jorg@example.test", MESSAGE)
        await session.close()
        return refused, fine

    refused, fine = run(scenario())
    assert (refused.reply.code, refused.reply.enhanced) == (553, "5.6.7")
    assert fine.reply.code == 250
    assert server.wait_for(1) and [m.rcpt_tos for m in server.messages] == [["jorg@example.test"]]


def test_utf8_recipient_is_sent_with_smtputf8_when_offered(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")
    _, outcome = run(
        send_one(
            Connector(settings(server.port)),
            [mx("mx1.example.test", "127.0.0.1")],
            recipient="jörg@example.test",
        )
    )
    assert outcome is not None and outcome.reply.code == 250
    assert server.wait_for(1) and server.messages[0].rcpt_tos == ["jörg@example.test"]


def test_message_over_the_size_limit_fails_without_sending(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1", size_limit=100)
    opened, outcome = run(
        send_one(Connector(settings(server.port)), [mx("mx1.example.test", "127.0.0.1")])
    )
    assert isinstance(opened, Session) and opened.size_limit == 100
    assert outcome is not None
    assert (outcome.reply.code, outcome.reply.enhanced) == (552, "5.3.4")
    assert server.messages == []


def test_address_that_would_inject_a_parameter_is_refused(smtp_server: ServerFactory) -> None:
    server = smtp_server("127.0.0.1")
    _, outcome = run(
        send_one(
            Connector(settings(server.port)),
            [mx("mx1.example.test", "127.0.0.1")],
            recipient="a@example.test> NOTIFY=NEVER",
        )
    )
    assert outcome is not None
    assert (outcome.reply.code, outcome.reply.enhanced, outcome.stage) == (553, "5.1.3", "rcpt")
    assert server.messages == []


def test_ca_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca_file"):
        Connector(settings(25, ca_file=str(tmp_path / "missing.pem")))


@pytest.mark.parametrize(
    ("helo", "tls"), [("out.sender.example", "maybe"), ("two words", "off"), ("", "off")]
)
def test_settings_that_cannot_work_are_config_errors(helo: str, tls: str) -> None:
    with pytest.raises(ConfigError):
        TransportSettings(helo=helo, tls=tls)
