"""One run of bounce processing: read a source, parse and apply each message, tidy the mailbox.

``import_files`` reads files given on the command line; ``fetch_mailbox`` reads the mailbox
configured under ``[bounces]``. For each message: parse (never raises), apply (one database
transaction), then — only if the message was recognised *and* proved which delivery it is
about, and this is not a dry run — remove it from the mailbox (IMAP move / POP3 delete).
Everything else (auto-replies, ordinary mail, reports about mail we did not send, forged
reports, unparseable messages) stays where it is, and the run report says why.

The database is written before the message is removed, so a run that dies in between
leaves the message to be read again; its dedupe keys make the second reading a no-op.
A broken database or mailbox stops the run (a ``BulkmailError``); a message that makes the
parser or the classifier fail is reported and left in place, and the run goes on.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkmail.bounces.apply import Effect, Outcome, apply_report
from bulkmail.bounces.brakes import Brakes, apply_brakes
from bulkmail.bounces.brakes import from_settings as brakes_from
from bulkmail.bounces.escalate import DEFAULT_SOFT_LIMIT, SoftLimit
from bulkmail.bounces.parse import parse_report
from bulkmail.bounces.sources import (
    Fetched,
    MailboxConfig,
    open_mailbox,
    read_files,
)
from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.db.engine import now as clock
from bulkmail.errors import BulkmailError, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessageResult:
    """What happened to one message."""

    ref: str
    kind: str  # bounce | delayed | complaint | unsubscribe | autoreply | unknown
    subject: str
    processed: bool  # recognised and applied (in a dry run: would be)
    removed: bool  # moved (IMAP) or deleted (POP3)
    effects: tuple[Effect, ...] = ()
    note: str = ""
    forged: bool = False  # claims to be about our mail and does not verify: left, recorded

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "subject": self.subject,
            "processed": self.processed,
            "removed": self.removed,
            "effects": [e.as_dict() for e in self.effects],
            "note": self.note,
            "forged": self.forged,
        }


@dataclass
class RunReport:
    """The results of one run, in the order the messages were read."""

    source: str
    dry_run: bool
    messages: list[MessageResult] = field(default_factory=list)
    paused: list[tuple[int, str]] = field(default_factory=list)  # (campaign, why): brakes

    def counts(self) -> dict[str, int]:
        kinds = Counter(m.kind for m in self.messages)
        out = {
            "messages": len(self.messages),
            "processed": sum(m.processed for m in self.messages),
            "left": sum(not m.processed for m in self.messages),
            "removed": sum(m.removed for m in self.messages),
            "forged": sum(m.forged for m in self.messages),
        }
        out.update({f"kind_{k}": n for k, n in sorted(kinds.items())})
        events = Counter(e.event for m in self.messages for e in m.effects if e.recorded)
        out.update({f"recorded_{k}": n for k, n in sorted(events.items())})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "messages": [m.as_dict() for m in self.messages],
            "paused": [{"campaign_id": c, "reason": r} for c, r in self.paused],
        }


def import_files(
    settings: Settings,
    db: Database,
    paths: Sequence[Path],
    *,
    dry_run: bool = False,
    now: float | None = None,
) -> RunReport:
    """Process the messages in ``paths`` (single messages or mbox files). Files stay as they are."""
    report = RunReport("files", dry_run)
    run(
        db,
        settings.secret(),
        read_files(paths),
        report,
        source="file",
        now=now,
        soft_limit=soft_limit(settings),
    )
    _brake(settings, db, report, now)
    return report


def fetch_mailbox(
    settings: Settings, db: Database, *, dry_run: bool = False, now: float | None = None
) -> RunReport:
    """Process the ``[bounces]`` mailbox; recognised messages are moved (IMAP) or deleted (POP3)."""
    cfg = mailbox_config(settings)
    secret = settings.secret()
    report = RunReport(cfg.address, dry_run)
    box = open_mailbox(cfg)
    try:
        run(
            db,
            secret,
            box.messages(),
            report,
            source=cfg.protocol,
            remove=None if dry_run else box.remove,
            now=now,
            soft_limit=soft_limit(settings),
        )
    except BaseException:
        box.abandon()
        raise
    box.close()
    _brake(settings, db, report, now)
    return report


def run(
    db: Database,
    secret: bytes,
    items: Iterable[Fetched],
    report: RunReport,
    *,
    source: str,
    remove: Callable[[Fetched], None] | None = None,
    now: float | None = None,
    soft_limit: SoftLimit = DEFAULT_SOFT_LIMIT,
) -> None:
    """Parse and apply every message of ``items``, appending to ``report``."""
    for item in items:
        stamp = clock() if now is None else now
        parsed = parse_report(item.data)
        try:
            outcome = apply_report(
                db,
                parsed,
                secret,
                source=source,
                now=stamp,
                dry_run=report.dry_run,
                soft_limit=soft_limit,
            )
        except BulkmailError:
            raise
        except Exception as exc:  # noqa: BLE001 - one odd message must not stop the run
            log.exception("bounce processing failed on %s", item.ref)
            outcome = Outcome(parsed.kind, False, note=f"cannot process: {exc}"[:300])
        removed = False
        if outcome.processed and remove is not None:
            remove(item)
            removed = True
        report.messages.append(
            MessageResult(
                item.ref,
                parsed.kind,
                parsed.subject[:200],
                outcome.processed,
                removed,
                outcome.effects,
                outcome.note,
                outcome.forged,
            )
        )


def _brake(settings: Settings, db: Database, report: RunReport, now: float | None) -> None:
    """The list-health brakes, for the campaigns this run recorded something for."""
    if report.dry_run:
        return
    touched = {e.campaign_id for m in report.messages for e in m.effects if e.campaign_id}
    if touched:
        report.paused = apply_brakes(db, touched, brakes(settings), clock() if now is None else now)


def brakes(settings: Settings) -> Brakes:
    """The ``[bounces]`` brake settings."""
    return brakes_from(settings)


def soft_limit(settings: Settings) -> SoftLimit:
    """``[bounces] soft_bounce_limit`` / ``soft_bounce_days``."""
    return SoftLimit(settings.bounces.soft_bounce_limit, settings.bounces.soft_bounce_days)


def mailbox_config(settings: Settings) -> MailboxConfig:
    """The ``[bounces]`` section as a MailboxConfig, with the password from the environment."""
    b = settings.bounces
    where = f"{settings.source}: bounces"
    if not b.host:
        raise ConfigError(f"{where}.host: required for 'bounces fetch' (the mailbox server)")
    if not b.username:
        raise ConfigError(f"{where}.username: required for 'bounces fetch'")
    password = os.environ.get(b.password_env, "")
    if not password:
        raise ConfigError(
            f"{where}.password_env: environment variable {b.password_env} "
            "is not set (the bounce mailbox password)"
        )
    if (
        b.security == "none"
        and b.host not in ("localhost", "::1")
        and not b.host.startswith("127.")
    ):
        raise ConfigError(
            f'{where}.security: "none" sends the password in clear; it is '
            f"allowed for loopback test servers only, not {b.host!r}"
        )
    ca_file = settings.path(b.ca_file) if b.ca_file else None
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"{where}.ca_file: {ca_file} does not exist")
    return MailboxConfig(
        b.protocol,
        b.host,
        b.port,
        b.security,
        b.username,
        password,
        b.mailbox,
        b.processed_folder,
        ca_file,
    )
