"""DKIM signing: RSA and Ed25519 signers and the key utilities. Pure: bytes in, header out."""

from bulkmail.signing.dkim import OVERSIGNED, SIGNED_HEADERS, DkimSigner, sign_all
from bulkmail.signing.keys import (
    PrivateKey,
    dns_txt_value,
    generate_private_key,
    key_bits,
    load_private_key,
    public_key_matches,
    split_txt,
)

__all__ = [
    "OVERSIGNED",
    "SIGNED_HEADERS",
    "DkimSigner",
    "PrivateKey",
    "dns_txt_value",
    "generate_private_key",
    "key_bits",
    "load_private_key",
    "public_key_matches",
    "sign_all",
    "split_txt",
]
