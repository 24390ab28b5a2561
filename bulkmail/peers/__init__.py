"""Local servers for the demo, the tests and the benchmark.

bulkmail talks to DNS and SMTP servers it does not control. To test it against real protocol
implementations rather than mocks, this package runs small scripted servers in background
threads: an authoritative DNS server (``peers.dns``, on dnslib) and a scripted SMTP server
(``peers.smtp``, on aiosmtpd). Each one listens on a loopback address only (127.0.0.0/8 or ::1),
starts in milliseconds and stops by itself, so a test can run many of them side by side — one
per MX host on 127.0.0.2, 127.0.0.3, … — and choose how each one misbehaves in one line.

Nothing here is used in production code paths; it needs the ``test`` extras (dnslib, aiosmtpd).
"""
