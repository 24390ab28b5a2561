"""Where bounce messages come from: files (single messages or mbox), IMAP and POP3 mailboxes.

A source yields ``Fetched`` messages (raw bytes and a reference a person can find them by)
and removes only the ones it is told to: IMAP moves them to the processed folder (``MOVE``
when the server offers it, else ``COPY`` + ``\\Deleted`` + ``UID EXPUNGE``), POP3 deletes
them (``DELE``, effective at ``QUIT``: a run that dies half-way deletes nothing). Every other
message is left untouched: IMAP fetches with ``BODY.PEEK[]`` so not even ``\\Seen`` changes.

TLS is always verified (``[bounces] ca_file`` names a private CA, e.g. a test CA); ``security``
is implicit TLS (IMAPS 993, POP3S 995), STARTTLS/STLS (143, 110), or ``none`` for loopback
tests. Errors of imaplib, poplib, ssl and the socket become one ``MailboxError`` line.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import poplib
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bulkmail.errors import BulkmailError, InputError

DEFAULT_PORTS = {
    ("imap", "tls"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
    ("pop3", "tls"): 995,
    ("pop3", "starttls"): 110,
    ("pop3", "none"): 110,
}


class MailboxError(BulkmailError):
    """The bounce mailbox cannot be reached, logged into or changed."""


@dataclass(frozen=True)
class Fetched:
    """One message from a source. ``key`` is what the source needs to remove it."""

    ref: str
    data: bytes
    key: str = ""


@dataclass(frozen=True)
class MailboxConfig:
    protocol: str  # imap | pop3
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str
    password: str
    mailbox: str = "INBOX"
    processed_folder: str = "bulkmail-processed"
    ca_file: Path | None = None
    timeout: float = 30.0

    @property
    def address(self) -> str:
        port = self.port or DEFAULT_PORTS[self.protocol, self.security]
        return f"{self.protocol} {self.host}:{port}"


class Mailbox(Protocol):
    def messages(self) -> Iterator[Fetched]: ...

    def remove(self, item: Fetched) -> None: ...

    def close(self) -> None: ...

    def abandon(self) -> None: ...


# -- files ------------------------------------------------------------------------------------


def read_files(paths: Sequence[Path]) -> Iterator[Fetched]:
    """Every message in ``paths``: a file starting with "From " is an mbox, else one message."""
    for path in paths:
        try:
            with path.open("rb") as fh:
                head = fh.read(5)
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if head != b"From ":
            yield Fetched(str(path), path.read_bytes())
            continue
        box = mailbox.mbox(path, create=False)
        try:
            for n, key in enumerate(box.iterkeys(), start=1):
                yield Fetched(f"{path}#{n}", box.get_bytes(key))
        finally:
            box.close()


# -- TLS and errors ---------------------------------------------------------------------------


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context (host name and chain), trusting ``ca_file`` if given."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MailboxError(f"bounces.ca_file {ca_file}: cannot load: {exc}") from None


@contextlib.contextmanager
def mailbox_errors(where: str) -> Iterator[None]:
    """Map the errors of imaplib, poplib, ssl and sockets to one MailboxError line."""
    try:
        yield
    except MailboxError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise MailboxError(f"{where}: TLS certificate not trusted: {exc.verify_message}") from None
    except (imaplib.IMAP4.error, poplib.error_proto) as exc:
        raise MailboxError(f"{where}: {_text(exc)}") from None
    except (OSError, EOFError) as exc:  # socket errors, timeouts, ssl.SSLError
        raise MailboxError(f"{where}: {type(exc).__name__}: {exc}") from None


def _text(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def open_mailbox(cfg: MailboxConfig) -> Mailbox:
    """Connect and log in to the configured mailbox."""
    if cfg.protocol == "pop3":
        return Pop3Mailbox.connect(cfg)
    return ImapMailbox.connect(cfg)


# -- IMAP -------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapMailbox:
    """An IMAP folder; processed messages move to ``processed_folder`` (created if missing)."""

    def __init__(self, conn: imaplib.IMAP4, cfg: MailboxConfig, allow_move: bool = True) -> None:
        self.conn = conn
        self.cfg = cfg
        self.where = cfg.address
        with mailbox_errors(self.where):
            typ, data = conn.capability()
            caps = set(data[0].decode("ascii", "replace").upper().split()) if data[0] else set()
        self.can_move = allow_move and "MOVE" in caps
        self.uidplus = "UIDPLUS" in caps
        self._folder_ready = False

    @classmethod
    def connect(cls, cfg: MailboxConfig) -> ImapMailbox:
        port = cfg.port or DEFAULT_PORTS["imap", cfg.security]
        with mailbox_errors(cfg.address):
            if cfg.security == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    cfg.host, port, ssl_context=tls_context(cfg.ca_file), timeout=cfg.timeout
                )
            else:
                conn = imaplib.IMAP4(cfg.host, port, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    conn.starttls(tls_context(cfg.ca_file))
            try:
                conn.login(cfg.username, cfg.password)
            except imaplib.IMAP4.error as exc:
                raise MailboxError(
                    f"{cfg.address}: login as {cfg.username!r} refused: {_text(exc)}"
                ) from None
            typ, data = conn.select(_quote(cfg.mailbox))
            if typ != "OK":
                raise MailboxError(
                    f"{cfg.address}: cannot open folder {cfg.mailbox!r}: {_text(Exception(*data))}"
                )
        return cls(conn, cfg)

    def messages(self) -> Iterator[Fetched]:
        with mailbox_errors(self.where):
            typ, data = self.conn.uid("SEARCH", "UNDELETED")
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        for uid in uids:
            with mailbox_errors(self.where):
                typ, parts = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
            body = next((p[1] for p in parts if isinstance(p, tuple)), None)
            if typ == "OK" and body is not None:
                yield Fetched(f"{self.cfg.mailbox} uid {uid.decode()}", body, uid.decode())

    def remove(self, item: Fetched) -> None:
        folder = _quote(self.cfg.processed_folder)
        with mailbox_errors(self.where):
            self._ensure_folder()
            if self.can_move:
                self._ok(self.conn.uid("MOVE", item.key, folder), f"move {item.ref}")
                return
            self._ok(self.conn.uid("COPY", item.key, folder), f"copy {item.ref}")
            self._ok(
                self.conn.uid("STORE", item.key, "+FLAGS.SILENT", r"(\Deleted)"), f"flag {item.ref}"
            )
            if self.uidplus:  # expunge only this message, never one a person flagged
                self._ok(self.conn.uid("EXPUNGE", item.key), f"expunge {item.ref}")

    def _ensure_folder(self) -> None:
        if self._folder_ready:
            return
        typ, data = self.conn.list('""', _quote(self.cfg.processed_folder))
        if not (typ == "OK" and data and data[0]):
            self._ok(
                self.conn.create(_quote(self.cfg.processed_folder)),
                f"create folder {self.cfg.processed_folder!r}",
            )
        self._folder_ready = True

    def _ok(self, response: tuple[str, list[object]], what: str) -> None:
        typ, data = response
        if typ != "OK":
            raise MailboxError(f"{self.where}: cannot {what}: {_text(Exception(*data))}")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # LOGOUT, never CLOSE: CLOSE would expunge
            self.conn.logout()

    def abandon(self) -> None:
        self.close()


# -- POP3 -------------------------------------------------------------------------------------


class Pop3Mailbox:
    """A POP3 maildrop; processed messages are deleted when the session ends well (QUIT)."""

    def __init__(self, conn: poplib.POP3, cfg: MailboxConfig) -> None:
        self.conn = conn
        self.cfg = cfg
        self.where = cfg.address

    @classmethod
    def connect(cls, cfg: MailboxConfig) -> Pop3Mailbox:
        port = cfg.port or DEFAULT_PORTS["pop3", cfg.security]
        with mailbox_errors(cfg.address):
            if cfg.security == "tls":
                conn: poplib.POP3 = poplib.POP3_SSL(
                    cfg.host, port, timeout=cfg.timeout, context=tls_context(cfg.ca_file)
                )
            else:
                conn = poplib.POP3(cfg.host, port, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    conn.stls(tls_context(cfg.ca_file))
            try:
                conn.user(cfg.username)
                conn.pass_(cfg.password)
            except poplib.error_proto as exc:
                raise MailboxError(
                    f"{cfg.address}: login as {cfg.username!r} refused: {_text(exc)}"
                ) from None
        return cls(conn, cfg)

    def messages(self) -> Iterator[Fetched]:
        with mailbox_errors(self.where):
            _resp, listing, _octets = self.conn.uidl()
        for line in listing:
            number, _, uidl = line.decode("ascii", "replace").partition(" ")
            with mailbox_errors(self.where):
                _resp, lines, _octets = self.conn.retr(int(number))
            yield Fetched(
                f"pop3 message {number} (uidl {uidl})", b"\r\n".join(lines) + b"\r\n", number
            )

    def remove(self, item: Fetched) -> None:
        with mailbox_errors(self.where):
            self.conn.dele(int(item.key))

    def close(self) -> None:
        """QUIT: the server deletes what was marked. Without it nothing is deleted."""
        with mailbox_errors(self.where):
            self.conn.quit()

    def abandon(self) -> None:
        """Drop the connection without QUIT, so the marked deletions do not happen."""
        with contextlib.suppress(Exception):
            self.conn.close()
