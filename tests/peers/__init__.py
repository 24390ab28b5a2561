"""Test-only peers (the DNS and SMTP peers live in bulkmail/peers, the demo uses them)."""
