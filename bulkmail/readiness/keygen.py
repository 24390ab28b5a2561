"""``bulkmail dkim keygen``: a new DKIM key pair — the private key on disk, the record to publish.

The private key is written readable by its owner only (mode 0600, set at creation, so it is
never readable by others even for a moment) and an existing file is never replaced unless
asked (``force``; then the new key is written beside it and renamed over it, so a crash
leaves the old key or the new one, never half of one). The public half comes back as the
TXT record for ``<selector>._domainkey.<domain>``, split into strings of at most 255 octets.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from bulkmail.errors import InputError
from bulkmail.readiness.rules import txt_record_text
from bulkmail.signing import dns_txt_value, generate_private_key, load_private_key, split_txt

_LABELS = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*"
)


@dataclass(frozen=True)
class GeneratedKey:
    """Where the private key went and what to publish."""

    key_file: Path
    domain: str
    selector: str
    algorithm: str
    strings: tuple[str, ...]  # the TXT record's character-strings, each ≤ 255 octets

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def zone_line(self) -> str:
        """The record as a zone-file line, ready to paste."""
        return txt_record_text(self.record_name, self.strings)

    def config_lines(self) -> list[str]:
        """The ``[dkim]`` settings that use this key."""
        prefix = "ed25519_" if self.algorithm == "ed25519" else ""
        return [
            "[dkim]",
            f'domain = "{self.domain}"',
            f'{prefix}selector = "{self.selector}"',
            f'{prefix}key_file = "{self.key_file}"',
        ]

    def as_dict(self) -> dict[str, object]:
        return {
            "key_file": str(self.key_file),
            "name": self.record_name,
            "type": "TXT",
            "strings": list(self.strings),
            "record": self.zone_line,
        }


def _name(what: str, value: str) -> str:
    cleaned = value.strip().rstrip(".").lower()
    if not _LABELS.fullmatch(cleaned):
        raise InputError(f"--{what} {value!r}: not a DNS name")
    return cleaned


def write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600; refuse to replace a file unless ``force``."""
    if path.exists() and not force:
        raise InputError(
            f"{path} exists; pass --force to replace it (the old key stops "
            "working once its record is replaced)"
        )
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if force else path
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists; pass --force to replace it") from None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # whatever the umask
            fh.write(data)
        if target != path:
            os.replace(target, path)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def generate_dkim_key(
    domain: str,
    selector: str,
    *,
    algorithm: str = "rsa",
    bits: int = 2048,
    out_dir: Path = Path("."),
    force: bool = False,
) -> GeneratedKey:
    """Generate a key, write it to ``out_dir/<selector>._domainkey.<domain>.pem``, and return
    the record to publish. InputError / SigningError for bad arguments."""
    domain, selector = _name("domain", domain), _name("selector", selector)
    pem = generate_private_key(algorithm, bits)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: cannot create it: {exc.strerror or exc}") from None
    path = out_dir.resolve() / f"{selector}._domainkey.{domain}.pem"
    write_private(path, pem, force=force)
    strings = tuple(split_txt(dns_txt_value(load_private_key(pem))))
    return GeneratedKey(path, domain, selector, algorithm, strings)
