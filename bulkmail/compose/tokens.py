"""Per-recipient tokens: who a message was for, provable without a database lookup.

One token names one delivery (campaign x subscriber). It appears in the one-click
unsubscribe URL, in the VERP envelope sender ``bounces+TOKEN@domain`` and in our
``X-Bulkmail-Delivery`` header, so a bounce, a complaint or an unsubscribe POST leads back
to the delivery, and nobody can forge one for another subscriber without the secret.

The format is ``<campaign id base36>-<subscriber id base36>-<HMAC-SHA256, 80 bits, base32>``
in lowercase letters and digits only: safe in a URL path, safe as an email local part, and
unchanged when an MTA lowercases the local part (parsing lowercases first).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

__all__ = ["make_token", "parse_token", "verp_address", "parse_verp", "message_id"]

_MAC_BYTES = 10  # 80 bits; base32 gives exactly 16 characters, no padding
_MAX_ID = 2**63 - 1
_TOKEN_RE = re.compile(r"([0-9a-z]{1,13})-([0-9a-z]{1,13})-([a-z2-7]{16})")
_VERP_PREFIX = "bounces"
_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lowercase
_BASE32_PAIRS = [a + b for a in _BASE32 for b in _BASE32]  # 10 bits -> two characters


def _base36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, rem = divmod(n, 36)
        out.append(_DIGITS36[rem])
    return "".join(reversed(out))


def _check_id(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise ValueError(f"{what} must be an integer in 0..2**63-1, not {value!r}")


@functools.lru_cache(maxsize=16)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, digestmod=hashlib.sha256)


def _mac(secret: bytes, purpose: bytes, campaign_id: int, subscriber_id: int) -> str:
    # Twice per message: the HMAC from a copy of one keyed per secret (the key schedule is
    # done once), base32 of the 80 bits by table (base64.b32encode is pure Python).
    mac = _keyed(secret).copy()
    mac.update(b"bulkmail:%s:%d:%d" % (purpose, campaign_id, subscriber_id))
    n = int.from_bytes(mac.digest()[:_MAC_BYTES], "big")
    pairs = _BASE32_PAIRS
    return "".join(
        (pairs[n >> 70], pairs[n >> 60 & 1023], pairs[n >> 50 & 1023], pairs[n >> 40 & 1023],
         pairs[n >> 30 & 1023], pairs[n >> 20 & 1023], pairs[n >> 10 & 1023], pairs[n & 1023])
    )  # fmt: skip


def make_token(secret: bytes, campaign_id: int, subscriber_id: int) -> str:
    """The delivery token for ``campaign_id`` x ``subscriber_id`` (about 25 characters)."""
    _check_id(campaign_id, "campaign_id")
    _check_id(subscriber_id, "subscriber_id")
    mac = _mac(secret, b"token", campaign_id, subscriber_id)
    return f"{_base36(campaign_id)}-{_base36(subscriber_id)}-{mac}"


def parse_token(secret: bytes, token: str) -> tuple[int, int] | None:
    """``(campaign_id, subscriber_id)`` if ``token`` is one we made, else None.

    Case-insensitive; forged, truncated, padded or non-canonical tokens give None. The MAC is
    compared in constant time.
    """
    if not isinstance(token, str) or len(token) > 64 or not token.isascii():
        return None
    token = token.lower()
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    campaign_id, subscriber_id = int(match[1], 36), int(match[2], 36)
    if campaign_id > _MAX_ID or subscriber_id > _MAX_ID:
        return None
    expected = make_token(secret, campaign_id, subscriber_id)
    if not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii")):
        return None
    return campaign_id, subscriber_id


def verp_address(token: str, domain: str) -> str:
    """The VERP envelope sender ``bounces+TOKEN@domain``."""
    return f"{_VERP_PREFIX}+{token}@{domain}"


def parse_verp(address: str, secret: bytes) -> tuple[int, int] | None:
    """``(campaign_id, subscriber_id)`` from a VERP address (``<...>`` allowed), else None.

    Only the part between the last ``+`` and the ``@`` is read, so a changed prefix or
    domain still identifies the delivery; the token itself must verify.
    """
    if not isinstance(address, str):
        return None
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, _domain = address.rpartition("@")
    if not at or "+" not in local:
        return None
    return parse_token(secret, local.rpartition("+")[2])


def message_id(secret: bytes, campaign_id: int, subscriber_id: int, domain: str) -> str:
    """A Message-ID ``<...@domain>`` that is the same every time for this delivery.

    A retry of the same delivery carries the same Message-ID, so receivers can de-duplicate
    and a returned header identifies the delivery. Uses its own MAC so it does not reveal
    the delivery token.
    """
    _check_id(campaign_id, "campaign_id")
    _check_id(subscriber_id, "subscriber_id")
    mac = _mac(secret, b"message-id", campaign_id, subscriber_id)
    return f"<{_base36(campaign_id)}.{_base36(subscriber_id)}.{mac}@{domain}>"
