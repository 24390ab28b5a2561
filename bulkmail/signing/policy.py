"""Whether mail may leave unsigned: the check ``campaigns send``, ``worker`` and ``run-due``
make before they touch anything.

Unsigned bulk mail is refused or spam-foldered by the large providers (Gmail and Yahoo have
required DKIM of bulk senders since 2024), and a config without ``[dkim]`` used to send it
without a word. A key is required unless the config says ``[dkim] required = false`` or the
operator passes ``--unsigned`` to one send. Pure: settings in, a message (or nothing) out.
"""

from __future__ import annotations

from bulkmail.config import Settings
from bulkmail.errors import ConfigError

KEYGEN_HINT = "bulkmail dkim keygen --domain <your domain> --selector <s> --out keys"


def signing_configured(settings: Settings) -> bool:
    """True when the config names at least one DKIM key to sign with."""
    return bool(settings.dkim.key_file or settings.dkim.ed25519_key_file)


def unsigned_refusal(settings: Settings, *, unsigned: bool = False) -> str | None:
    """The one-line reason not to send with these settings, or None when sending may go on."""
    if signing_configured(settings) or unsigned or not settings.dkim.required:
        return None
    return (
        f"{settings.source}: [dkim]: no DKIM key configured, so mail would go out unsigned; "
        f"create one with '{KEYGEN_HINT}' and set [dkim] domain, selector and key_file "
        "(or set [dkim] required = false to send unsigned)"
    )


def require_signing(settings: Settings, *, unsigned: bool = False) -> None:
    """Raise ``ConfigError`` (one line, exit 2) when mail would go out unsigned by surprise."""
    reason = unsigned_refusal(settings, unsigned=unsigned)
    if reason is not None:
        raise ConfigError(reason)
