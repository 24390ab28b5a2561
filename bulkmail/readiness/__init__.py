"""The sender readiness checker (``bulkmail check``) and DKIM key generation.

``checker.run_checks(settings, ips=..., from_domain=..., probe=...)`` runs every check and
returns a ``Report``; ``report`` shows it; ``keygen.generate_dkim_key`` makes a new key.
Pure rules live in ``rules`` and ``requirements``; DNS-facing checks in ``dnschecks`` and
``dkimcheck`` (through ``lookup``); SMTP-facing ones in ``tlscheck``.
"""
