"""The bounce mailbox sources against a real Dovecot on loopback: IMAPS, IMAP STARTTLS, POP3S,
POP3 STLS; only the messages told to go leave, the others are not even marked read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from bulkmail.bounces.sources import (
    ImapMailbox,
    MailboxConfig,
    MailboxError,
    Pop3Mailbox,
    open_mailbox,
)
from tests.peers.dovecot import Dovecot


def message(subject: str) -> bytes:
    return (
        f"From: someone@example.com\r\nTo: bounces@news.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n\r\nBody of {subject}.\r\n"
    ).encode()


def config(server: Dovecot, protocol: str, security: str, **changes: object) -> MailboxConfig:
    port = server.ports[
        {
            ("imap", "tls"): "imaps",
            ("imap", "starttls"): "imap",
            ("pop3", "tls"): "pop3s",
            ("pop3", "starttls"): "pop3",
        }[protocol, security]
    ]
    cfg = MailboxConfig(
        protocol,
        server.host,
        port,
        security,
        server.user,
        server.password,
        ca_file=server.ca_file,
        processed_folder="Processed Bounces",
    )
    return replace(cfg, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_moves_only_the_removed_message_and_marks_nothing_read(
    mailbox: Dovecot, security: str
) -> None:  # noqa: F811 (fixture)
    mailbox.deliver([message("one"), message("two"), message("three")])
    box = open_mailbox(config(mailbox, "imap", security))
    items = list(box.messages())
    assert [i.data.split(b"Subject: ")[1].split(b"\r\n")[0] for i in items] == [
        b"one",
        b"two",
        b"three",
    ]
    box.remove(items[1])
    box.close()
    assert mailbox.subjects() == ["one", "three"]
    assert mailbox.subjects("Processed Bounces") == ["two"]
    assert all("\\Seen" not in flags for _subject, flags in mailbox.folder())


def test_imap_without_move_expunges_only_its_own_message(mailbox: Dovecot) -> None:  # noqa: F811 (fixture)
    mailbox.deliver([message("ours"), message("a person deleted this")])
    conn = mailbox.imap()
    conn.select("INBOX")
    conn.store("2", "+FLAGS", r"(\Deleted)")  # flagged by someone else, not yet expunged
    conn.logout()
    box = ImapMailbox.connect(config(mailbox, "imap", "tls"))
    box = ImapMailbox(box.conn, box.cfg, allow_move=False)
    items = list(box.messages())
    assert len(items) == 1  # \Deleted messages are not read
    box.remove(items[0])
    box.close()
    assert mailbox.subjects() == ["a person deleted this"]
    assert mailbox.subjects("Processed Bounces") == ["ours"]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_pop3_deletes_only_the_removed_message_at_quit(mailbox: Dovecot, security: str) -> None:  # noqa: F811 (fixture)
    mailbox.deliver([message("one"), message("two")])
    box = open_mailbox(config(mailbox, "pop3", security))
    assert isinstance(box, Pop3Mailbox)
    items = list(box.messages())
    assert [b"Subject: one" in items[0].data, b"Subject: two" in items[1].data] == [True, True]
    box.remove(items[0])
    box.close()
    assert mailbox.subjects() == ["two"]


def test_pop3_session_that_ends_without_quit_deletes_nothing(mailbox: Dovecot) -> None:  # noqa: F811 (fixture)
    mailbox.deliver([message("one"), message("two")])
    box = Pop3Mailbox.connect(config(mailbox, "pop3", "tls"))
    for item in list(box.messages()):
        box.remove(item)
    box.abandon()
    assert mailbox.subjects() == ["one", "two"]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_certificate_from_another_ca_is_refused(
    dovecot: Dovecot,
    tmp_path: Path,  # noqa: F811 (fixture)
    protocol: str,
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other)
    with pytest.raises(MailboxError, match="certificate not trusted"):
        open_mailbox(config(dovecot, protocol, "tls", ca_file=other))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_wrong_password_is_one_error_naming_the_server(
    dovecot: Dovecot,  # noqa: F811 (fixture)
    protocol: str,
) -> None:
    with pytest.raises(
        MailboxError,
        match=rf"{protocol} 127\.0\.0\.1:\d+: login as "
        r"'bounces' refused",
    ):
        open_mailbox(config(dovecot, protocol, "starttls", password="wrong"))


def test_nothing_listening_is_a_mailbox_error(dovecot: Dovecot) -> None:  # noqa: F811 (fixture)
    from bulkmail.peers.smtp import free_port

    with pytest.raises(MailboxError, match="ConnectionRefusedError"):
        open_mailbox(config(dovecot, "imap", "tls", port=free_port()))


def test_the_mailbox_password_comes_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bulkmail.bounces.process import mailbox_config
    from bulkmail.config import parse_settings
    from bulkmail.errors import ConfigError

    raw = {"bounces": {"host": "imap.example.com", "username": "b", "password_env": "BM_PW"}}
    monkeypatch.delenv("BM_PW", raising=False)
    with pytest.raises(ConfigError, match="BM_PW is not set"):
        mailbox_config(parse_settings(raw, "t.toml"))
    monkeypatch.setenv("BM_PW", "s3cret")
    cfg = mailbox_config(parse_settings(raw, "t.toml"))
    assert (cfg.password, cfg.address) == ("s3cret", "imap imap.example.com:993")
    raw["bounces"]["security"] = "none"
    with pytest.raises(ConfigError, match="loopback test servers only"):
        mailbox_config(parse_settings(raw, "t.toml"))
