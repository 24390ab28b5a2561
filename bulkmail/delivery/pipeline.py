"""Compose then sign: the bytes of one delivery, from parts prepared once per campaign.

The engine asks ``MessageFactory.build`` for each claimed delivery; composers (compiled
templates, constant headers) are made once per campaign and the DKIM signers once per
process. ``preview_bytes`` is the same path for ``campaigns preview``.

A message that cannot be built for one member (its template fails for that member's values,
or composing hits anything unexpected) raises a :class:`~bulkmail.errors.TemplateError`: the
engine records that delivery ``failed`` with the reason and goes on with everyone else. A
campaign whose template cannot be loaded at all (its folder is gone, or missing on this host
of a fleet) is a fault of the campaign, not of its members: it is paused with the reason
(:class:`CampaignUnusable`) and no delivery is failed, so fixing it and resuming sends to all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bulkmail.campaigns import composer_for, find_recipient, recipient_of
from bulkmail.compose.mime import Composed, Composer
from bulkmail.config import Settings
from bulkmail.db import control
from bulkmail.db.engine import Database, now
from bulkmail.db.models import PAUSED, RUNNING
from bulkmail.db.queries import Claimed
from bulkmail.errors import BulkmailError, ConfigError, InputError, SigningError, TemplateError
from bulkmail.signing.dkim import DkimSigner, sign_all

log = logging.getLogger(__name__)


class CampaignUnusable(TemplateError):
    """The campaign cannot be composed for anyone; it has been paused with this reason."""


@dataclass(frozen=True)
class Message:
    envelope_from: str
    recipient: str
    data: bytes
    smtputf8: bool


def load_signers(settings: Settings) -> list[DkimSigner]:
    """The DKIM signers the config asks for: RSA (or Ed25519) key_file, plus an Ed25519 one."""
    dkim = settings.dkim
    signers = []
    for key_file, selector in (
        (dkim.key_file, dkim.selector),
        (dkim.ed25519_key_file, dkim.ed25519_selector or dkim.selector),
    ):
        if not key_file:
            continue
        path = settings.path(key_file)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SigningError(f"dkim key {path}: cannot read: {exc.strerror}") from None
        try:
            signers.append(DkimSigner(pem, dkim.domain, selector))
        except SigningError as exc:  # name the file: "cannot be loaded" alone says not which
            raise SigningError(f"dkim key {path}: {exc}") from None
    return signers


class MessageFactory:
    """Builds signed messages for claimed deliveries of any number of campaigns."""

    def __init__(self, settings: Settings, db: Database, secret: bytes | None = None) -> None:
        self._settings = settings
        self._db = db
        self._secret = secret if secret is not None else settings.secret()
        self._signers = load_signers(settings)
        self._composers: dict[int, Composer] = {}

    def composer(self, campaign_id: int) -> Composer:
        c = self._composers.get(campaign_id)
        if c is None:
            try:
                c = composer_for(self._settings, self._db, campaign_id, self._secret)
            except (TemplateError, ConfigError, InputError) as exc:
                reason = f"{exc}; fix it, then: bulkmail campaigns resume {campaign_id}"
                control.transition(
                    self._db, campaign_id, PAUSED, now(), from_states=[RUNNING], reason=reason
                )
                raise CampaignUnusable(reason) from None
            self._composers[campaign_id] = c
        return c

    def build(self, item: Claimed) -> Message:
        composer = self.composer(item.campaign_id)
        try:
            composed = composer.compose(
                recipient_of(item.subscriber_id, item.email, item.name, item.attributes)
            )
        except BulkmailError:
            raise
        except Exception as exc:  # a bug met by one member's data must not stop the send
            log.exception("composing delivery %s failed", item.id)
            raise TemplateError(f"cannot compose: {type(exc).__name__}: {exc}") from None
        data = sign_composed(self._signers, composed)
        return Message(composed.envelope_from, composed.recipient, data, composed.needs_smtputf8)


def sign_composed(signers: list[DkimSigner], composed: Composed) -> bytes:
    """The message signed by every signer, with the body hash the composer already has."""
    if not signers:
        return composed.data
    return sign_all(signers, composed.data, bh=composed.body_hash)


def preview_bytes(settings: Settings, db: Database, campaign_id: int, address: str) -> bytes:
    """Exactly what would be sent to ``address`` for this campaign, signed."""
    composer = composer_for(settings, db, campaign_id)
    composed = composer.compose(find_recipient(db, campaign_id, address))
    return sign_composed(load_signers(settings), composed)
