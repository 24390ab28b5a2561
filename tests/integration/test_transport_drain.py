"""The transport's body write against a peer that reads slowly and answers at once.

aiosmtplib (5.1.3) drops any reply that arrives while no reply is marked as expected: the
transport writes the message itself, so when the socket is full it waits for the buffer to
drain, and a reply that comes in during that wait must not be thrown away (that turns a
delivered message into a timeout, a retry, a duplicate). The peer here is a raw asyncio server
with a tiny receive buffer: after ``354`` it answers at once, then pauses before reading the
body, so the client is suspended in its drain when the answer arrives.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiosmtplib.protocol import SMTPProtocol

from bulkmail.delivery.routing import MxHost
from bulkmail.delivery.transport import Connector, Session, Timeouts, TransportSettings

BODY = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 40_000  # ~3 MB: more than any buffer
TIMEOUTS = Timeouts(
    connect=2, greeting=5, mail=5, rcpt=5, data_init=5, data_block=10, data_end=3, session=60
)


async def _slow_reader_peer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]],
    received: list[int],
) -> None:
    """SMTP enough for one message; after 354, ``answer`` runs before the body is read."""
    writer.write(b"220 slow.test ESMTP\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-slow.test\r\n250 8BITMIME\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            writer.write(b"250 2.1.0 OK\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            break
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            await answer(writer)
            body = await reader.readuntil(b"\r\n.\r\n")
            received.append(len(body))
        else:
            writer.write(b"502 5.5.2 what\r\n")
        await writer.drain()
    writer.close()


async def _answer_then_pause(writer: asyncio.StreamWriter) -> None:
    """The reply to the dot, sent before reading the body (as a server that answers early
    does); then the body sits unread long enough for the client's buffer to fill."""
    writer.write(b"250 2.0.0 queued as EARLY\r\n")
    await writer.drain()
    await asyncio.sleep(1.0)


async def _send_through_slow_peer() -> tuple[int, bool, str, list[int]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepts
    listener.bind(("127.0.0.1", 0))
    received: list[int] = []
    server = await asyncio.start_server(
        lambda r, w: _slow_reader_peer(r, w, _answer_then_pause, received),
        sock=listener,
        limit=8 * 1024 * 1024,
    )
    port = listener.getsockname()[1]
    try:
        connector = Connector(
            TransportSettings(helo="out.sender.example", port=port, tls="off", timeouts=TIMEOUTS)
        )
        opened = await connector.open([MxHost("slow.test", 10, ("127.0.0.1",))])
        assert isinstance(opened, Session), opened
        outcome = await opened.send("bounce@sender.example", "a@slow.test", BODY)
        await opened.close()
        return outcome.reply.code, outcome.delivered_possible, outcome.reply.text, received
    finally:
        server.close()
        await server.wait_closed()


def test_reply_arriving_while_the_body_drains_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paused: list[bool] = []
    original = SMTPProtocol.pause_writing

    def pause_writing(self: SMTPProtocol) -> None:
        paused.append(True)
        original(self)

    monkeypatch.setattr(SMTPProtocol, "pause_writing", pause_writing)
    code, possible, text, received = asyncio.run(_send_through_slow_peer())
    assert paused, "the client's write buffer never filled: the drain path did not run"
    assert received, "the peer never got the whole body"
    assert (code, possible) == (250, False), text
    assert "EARLY" in text
