"""Warnings about a loaded config: things that work, but that receivers will hold against us.

Each is one line on stderr when a command loads the config, never an error: the command still
runs. Pure: settings in, lines out (``App.settings`` prints them).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bulkmail.config import Settings


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_unsubscribe_url(url: str) -> bool:
    """A URL for mailbox providers that is not https (RFC 8058 §3.1 requires an https URI).

    A loopback URL is exempt: it never leaves this machine, so it is a local test setup (the
    demo, a test suite); ``bulkmail check`` reports it as unreachable from the internet."""
    parts = urlsplit(url)
    return parts.scheme.lower() != "https" and not _loopback((parts.hostname or "").lower())


def config_notices(settings: Settings) -> list[str]:
    """The warning lines for ``settings`` (empty: nothing to say)."""
    notices = []
    url = settings.unsubscribe.url
    if insecure_unsubscribe_url(url):
        notices.append(
            f"{settings.source}: unsubscribe.url: {url} is not https; RFC 8058 one-click "
            "unsubscribe needs https, and Gmail and Yahoo ignore the header without it"
        )
    return notices
