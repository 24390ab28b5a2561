"""Webhook signatures (pure): HMAC-SHA256 over "<timestamp>.<body>", as Stripe signs.

The sender puts ``Bulkmail-Signature: t=<unix seconds>,v1=<hex digest>`` on every POST. A
receiver recomputes the digest with the shared secret over the raw body, compares in
constant time, and refuses a timestamp older than its tolerance, so a captured request
cannot be replayed later. The event id (``Bulkmail-Event-Id`` and the body's ``id``) is the
same on every retry: a receiver that saw it already answers 2xx and does nothing.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Bulkmail-Signature"
EVENT_HEADER = "Bulkmail-Event-Id"
TOLERANCE = 300.0  # seconds a receiver accepts between the signature's time and its clock


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Bulkmail-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: bytes, body: bytes, header: str, now: float, tolerance: float = TOLERANCE
) -> bool:
    """True when ``header`` is a signature of ``body`` with ``secret`` made within
    ``tolerance`` seconds of ``now``. Any ``v1`` entry may match (a secret being rotated)."""
    timestamp: int | None = None
    candidates = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, c) for c in candidates)
