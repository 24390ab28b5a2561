"""DKIM keys: load, generate, and publish them.

A DKIM key is a private key on the sending side and a TXT record on the DNS side. This module
is the only place that knows both shapes: it loads a PEM file into a `cryptography` key
(RSA or Ed25519, told apart by the key itself), generates new keys, renders the
``v=DKIM1; k=…; p=…`` record (RFC 6376 §3.6.1, RFC 8463 §4 for Ed25519) and splits it into
the 255-octet strings a TXT record is made of. The readiness checker uses
``public_key_matches`` to compare a published record with the configured key.

Every failure is a ``SigningError`` with a one-line message; no `cryptography` exception leaves.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from bulkmail.errors import SigningError

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: RFC 8301 §3.2: verifiers must not accept RSA keys shorter than 1024 bits.
MIN_RSA_BITS = 1024


def load_private_key(pem: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key (PKCS#8 or PKCS#1) for DKIM signing."""
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # the key is encrypted
        raise SigningError(f"DKIM key cannot be loaded: {exc}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(
            "DKIM key cannot be loaded: not an unencrypted PEM private key"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SigningError(
                f"DKIM RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise SigningError(f"DKIM key type {type(key).__name__} is not supported; use RSA or Ed25519")


def generate_private_key(algorithm: str = "rsa", bits: int = 2048) -> bytes:
    """Generate a new DKIM private key and return it as unencrypted PKCS#8 PEM."""
    key: PrivateKey
    if algorithm == "rsa":
        if bits < MIN_RSA_BITS:
            raise SigningError(f"DKIM RSA keys need at least {MIN_RSA_BITS} bits, not {bits}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise SigningError(f"unknown DKIM key algorithm {algorithm!r}; use 'rsa' or 'ed25519'")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_base64(key: PrivateKey) -> str:
    """The ``p=`` value: base64 SPKI DER for RSA, base64 of the 32 raw bytes for Ed25519."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def key_type(key: PrivateKey) -> str:
    """The ``k=`` tag of the key record: ``rsa`` or ``ed25519``."""
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"


def dns_txt_value(key: PrivateKey) -> str:
    """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
    return f"v=DKIM1; k={key_type(key)}; p={public_key_base64(key)}"


def split_txt(value: str, size: int = 255) -> list[str]:
    """Split a TXT value into strings of at most ``size`` octets (RFC 1035 §3.3.14).

    The receiver concatenates the strings without separators (RFC 6376 §3.6.2.2).
    """
    if size < 1:
        raise ValueError("size must be positive")
    if not value:
        return [""]
    return [value[i : i + size] for i in range(0, len(value), size)]


def public_key_matches(private_key: PrivateKey, p_base64: str) -> bool:
    """Whether a published ``p=`` value (whitespace allowed) is this private key's public half."""
    cleaned = "".join(p_base64.split())
    try:
        published = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return False
    return published == base64.b64decode(public_key_base64(private_key))


def key_bits(key: PrivateKey) -> int | None:
    """The RSA modulus size in bits; ``None`` for Ed25519 (a fixed-size curve key)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.key_size
    return None
