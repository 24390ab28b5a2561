"""The bulkmail error tree.

Every boundary (aiosmtplib, dnspython, SQLAlchemy, Jinja2, the file system) translates the
errors of the library below it into one of these, so the CLI can print a one-line message for
anything a user can cause and never a traceback. Outcomes of a delivery are *values*
(see ``bulkmail.delivery.classify``), not exceptions: these are for broken input and
broken infrastructure.
"""

from __future__ import annotations


class BulkmailError(Exception):
    """Root of every error bulkmail raises on purpose. ``str(err)`` is the user-facing line."""

    exit_code = 1


class ConfigError(BulkmailError):
    """The configuration file or the environment is wrong (unknown key, wrong type, missing)."""

    exit_code = 2


class DatabaseError(BulkmailError):
    """The database is unreachable or not initialised."""


class NotFoundError(BulkmailError):
    """A named list, campaign or subscriber does not exist."""


class InputError(BulkmailError):
    """A file or value given by the user cannot be used (bad CSV, bad address, bad date)."""


class TemplateError(BulkmailError):
    """A campaign template cannot be loaded or rendered."""


class SigningError(BulkmailError):
    """A DKIM key cannot be loaded or used."""


class DeliveryError(BulkmailError):
    """Sending cannot proceed at all (for example, the smart host rejects our credentials)."""


class RelayError(DeliveryError):
    """The smart host cannot be used as configured (its certificate does not verify, the
    password variable is not set, our credentials are refused): stop the send at once instead
    of deferring every recipient until expiry."""


class AuthenticationError(RelayError):
    """The smart host refused our credentials: stop the send instead of bouncing everyone."""
