"""Fixtures for integration tests: the ``world`` of DNS and SMTP servers (world.py) and the
private Dovecot mailbox (tests/peers/dovecot.py)."""

from tests.integration.world import world  # noqa: F401
from tests.peers.dovecot import dovecot, mailbox  # noqa: F401
