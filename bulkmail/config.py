"""Settings: a TOML file plus the environment, loaded into frozen dataclasses, validated on load.

Where the file is: ``--config PATH``, else ``$BULKMAIL_CONFIG``, else ``./bulkmail.toml``; a
missing default file means "all defaults" (so ``bulkmail init`` works in an empty folder).
Secrets never live in the file: it names environment variables (``password_env``,
``secret_env``) and ``$BULKMAIL_DATABASE_URL`` overrides ``[database] url``.

Every problem (an unknown key, a wrong type, a bad value) is one ``ConfigError`` line naming
the file, the key and what is wrong — the keys below are a contract other tools rely on.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bulkmail.db.engine import absolute_sqlite_url
from bulkmail.errors import ConfigError

DEFAULT_PATH = "bulkmail.toml"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///bulkmail.db"


@dataclass(frozen=True)
class SenderSettings:
    helo: str = "localhost"
    mode: str = "mx"
    port: int = 25
    tls: str = "opportunistic"
    return_path_domain: str = "localhost"
    message_id_domain: str = ""
    ca_file: str = ""
    sender_id: str = "bulkmail"
    # MTA-STS (RFC 8461): "enforce" obeys published policies, "testing-only" treats every
    # policy as mode testing (deliver, record failures), "off" never looks. mta_sts_port is
    # the policy host's HTTPS port: 443 except in tests.
    mta_sts: str = "enforce"
    mta_sts_port: int = 443
    # DANE (RFC 7672): "on" trusts TLSA records the [dns] resolver validated (AD set) and
    # then requires TLS matching them; needs a validating resolver (unbound, ...).
    dane: str = "off"


@dataclass(frozen=True)
class RelaySettings:
    host: str = ""
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password_env: str = "BULKMAIL_RELAY_PASSWORD"
    ca_file: str = ""


@dataclass(frozen=True)
class DnsSettings:
    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 5.0


@dataclass(frozen=True)
class DkimSettings:
    domain: str = ""
    selector: str = ""
    key_file: str = ""
    ed25519_selector: str = ""
    ed25519_key_file: str = ""
    required: bool = True  # refuse to send when no key is configured (bulkmail.signing.policy)


@dataclass(frozen=True)
class Limits:
    connections: int = 10
    messages_per_connection: int = 100
    rate: float = 0.0
    # Per destination domain, over [sender] mta_sts / dane ("" = as [sender] says).
    mta_sts: str = ""
    dane: str = ""


@dataclass(frozen=True)
class RetrySettings:
    intervals: tuple[str, ...] = ("30m", "1h", "2h", "4h")
    max_age: str = "5d"


@dataclass(frozen=True)
class Timeouts:
    """SMTP command timeouts in seconds: RFC 5321 §4.5.3.2's minimums, and a cap on a whole
    session. The one definition: the transport uses this class as it is."""

    connect: float = 30.0
    greeting: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_block: float = 180.0
    data_end: float = 600.0
    session: float = 1800.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not getattr(self, f.name) > 0:
                raise ConfigError(f"timeouts.{f.name}: must be more than 0 seconds")


@dataclass(frozen=True)
class UnsubscribeSettings:
    url: str = "http://localhost:8080/unsubscribe"
    mailto: str = ""
    secret_env: str = "BULKMAIL_SECRET"


@dataclass(frozen=True)
class EngineSettings:
    batch_size: int = 500
    lease_seconds: float = 300.0  # a claimed delivery's lease; a dead worker's rows return after it
    site_lease_seconds: float = 30.0  # a destination site's lease (fleet-wide limits)
    flush_interval: float = 0.2


@dataclass(frozen=True)
class BounceSettings:
    """The bounce mailbox read by ``bounces fetch``."""

    protocol: str = "imap"  # "imap" | "pop3"
    host: str = ""
    port: int = 0  # 0 = the protocol's default for the security chosen
    security: str = "tls"  # "tls" (implicit) | "starttls" | "none" (loopback tests only)
    username: str = ""
    password_env: str = "BULKMAIL_BOUNCE_PASSWORD"
    mailbox: str = "INBOX"
    processed_folder: str = "bulkmail-processed"  # IMAP: where recognised messages are moved
    ca_file: str = ""
    # Soft bounces that add up: a full or inactive mailbox on this many deliveries within this
    # many days suppresses the address (0: never). Policy and spam blocks never count.
    soft_bounce_limit: int = 3
    soft_bounce_days: float = 14.0
    # List-health brakes: a running campaign pauses when its complaints reach this share of
    # delivered (after a minimum), or its hard bounces this share of attempts (0: off).
    complaint_brake_rate: float = 0.003
    complaint_warn_rate: float = 0.001
    complaint_brake_min_delivered: int = 1000
    bounce_brake_rate: float = 0.05
    bounce_brake_min_attempts: int = 1000


@dataclass(frozen=True)
class CheckSettings:
    """The readiness checker (``bulkmail check``)."""

    ips: tuple[str, ...] = ()  # sending IPs; --ip adds more
    dnsbl_zones: tuple[str, ...] = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")


@dataclass(frozen=True)
class ScheduleSettings:
    """Scheduling and campaign control."""

    timezone: str = "UTC"  # for --at times given without an offset
    grace: str = "24h"  # a scheduled campaign later than this is marked missed, not sent
    pause_after_failures: int = 200  # consecutive connection/policy failures that pause a campaign


@dataclass(frozen=True)
class WebhookSettings:
    """Events POSTed to your endpoints by ``bulkmail webhooks run``: HMAC-signed JSON, retried
    with backoff until answered 2xx. With no ``urls`` nothing is written to the outbox."""

    urls: tuple[str, ...] = ()
    secret_env: str = "BULKMAIL_WEBHOOK_SECRET"  # the HMAC-SHA256 key for the signature
    events: tuple[str, ...] = ()  # types to send ("delivery.sent", "campaign.*"); empty: all
    timeout: float = 10.0  # seconds for one POST
    concurrency: int = 8  # POSTs in flight at once
    events_per_post: int = 1  # more than 1: each POST carries a JSON array of up to this many
    retry_initial: float = 10.0  # seconds before the first retry, doubled after each failure
    retry_max: float = 3600.0  # ... up to this; an event is retried until delivered


@dataclass(frozen=True)
class SignupSettings:
    """The sign-up form of ``serve`` for lists created with ``--double-opt-in``."""

    url: str = ""  # public URL of the form's folder: https://news.example/subscribe
    from_address: str = ""  # From of the confirmation mail: "News <news@news.example>"
    subject: str = "Please confirm your subscription to {list}"
    rate_limit: int = 5  # sign-ups per client IP address ...
    rate_window: float = 3600.0  # ... per this many seconds
    confirm_within: float = 604800.0  # seconds a confirmation link works (7 days)


@dataclass(frozen=True)
class ShapingSettings:
    """Traffic shaping (``bulkmail.shaping``): an operator rule pack over the shipped one."""

    rules_file: str = ""  # same format as bulkmail/shaping/providers.toml; "" = shipped only


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = DatabaseSettings()
    sender: SenderSettings = SenderSettings()
    relay: RelaySettings = RelaySettings()
    dns: DnsSettings = DnsSettings()
    dkim: DkimSettings = DkimSettings()
    limits: Mapping[str, Limits] = field(default_factory=lambda: {"default": Limits()})
    retry: RetrySettings = RetrySettings()
    timeouts: Timeouts = Timeouts()
    unsubscribe: UnsubscribeSettings = UnsubscribeSettings()
    engine: EngineSettings = EngineSettings()
    bounces: BounceSettings = BounceSettings()
    check: CheckSettings = CheckSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    webhooks: WebhookSettings = WebhookSettings()
    signup: SignupSettings = SignupSettings()
    shaping: ShapingSettings = ShapingSettings()
    providers: Mapping[str, Any] = field(default_factory=dict)  # inline [providers."name"]
    limits_set: Mapping[str, frozenset[str]] = field(default_factory=dict)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "<defaults>"
    base_dir: Path = Path(".")

    def limits_for(self, domain: str) -> Limits:
        """The limits for a destination domain: its own override, else ``[limits.default]``."""
        return self.limits.get(domain.lower()) or self.limits["default"]

    def secret(self) -> bytes:
        """The HMAC key for tokens, from the environment variable the config names."""
        value = os.environ.get(self.unsubscribe.secret_env, "")
        if not value:
            raise ConfigError(
                f"{self.source}: unsubscribe.secret_env: environment variable "
                f"{self.unsubscribe.secret_env} is not set "
                "(the HMAC key for unsubscribe and bounce tokens)"
            )
        if len(value.encode()) < 16:
            raise ConfigError(
                f"{self.source}: unsubscribe.secret_env: {self.unsubscribe.secret_env} must be at "
                "least 16 characters (try: openssl rand -hex 32)"
            )
        return value.encode()

    def relay_password(self) -> str:
        return os.environ.get(self.relay.password_env, "")

    def path(self, value: str) -> Path:
        """A path from the config file, relative to the file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


_CHOICES = {
    ("sender", "mode"): ("mx", "relay"),
    ("sender", "tls"): ("opportunistic", "required", "off"),
    ("sender", "mta_sts"): ("enforce", "testing-only", "off"),
    ("sender", "dane"): ("off", "on"),
    ("limits", "mta_sts"): ("", "enforce", "testing-only", "off"),
    ("limits", "dane"): ("", "off", "on"),
    ("relay", "security"): ("starttls", "tls"),
    ("bounces", "protocol"): ("imap", "pop3"),
    ("bounces", "security"): ("tls", "starttls", "none"),
}

_SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "sender": SenderSettings,
    "relay": RelaySettings,
    "dns": DnsSettings,
    "dkim": DkimSettings,
    "retry": RetrySettings,
    "timeouts": Timeouts,
    "unsubscribe": UnsubscribeSettings,
    "engine": EngineSettings,
    "bounces": BounceSettings,
    "check": CheckSettings,
    "schedule": ScheduleSettings,
    "webhooks": WebhookSettings,
    "signup": SignupSettings,
    "shaping": ShapingSettings,
}


def _coerce(where: str, expected: Any, value: Any) -> Any:
    """Check one value against its annotated type; int is accepted where float is expected."""
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        name = expected.__name__ if isinstance(expected, type) else "list of strings"
        raise ConfigError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")
    return value


def _section(source: str, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{source}: {name}.{key}"
        if key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{where}: unknown key (known: {known})")
        value = _coerce(where, hints[key], value)
        choices = _CHOICES.get((name.split(".")[0], key))
        if choices and value not in choices:
            raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
        if hints[key] in (int, float) and value < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
        values[key] = value
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _validate(s: Settings) -> None:
    """Cross-key rules and the values that need parsing (durations)."""
    from bulkmail.delivery.retry import parse_duration

    for i, text in enumerate(s.retry.intervals):
        try:
            parse_duration(text)
        except ValueError as exc:
            raise ConfigError(f"{s.source}: retry.intervals[{i}]: {exc}") from None
    if not s.retry.intervals:
        raise ConfigError(f"{s.source}: retry.intervals: must name at least one interval")
    try:
        parse_duration(s.retry.max_age)
    except ValueError as exc:
        raise ConfigError(f"{s.source}: retry.max_age: {exc}") from None
    try:
        parse_duration(s.schedule.grace)
    except ValueError as exc:
        raise ConfigError(f"{s.source}: schedule.grace: {exc}") from None
    try:
        ZoneInfo(s.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{s.source}: schedule.timezone: unknown time zone {s.schedule.timezone!r}"
        ) from None
    if s.sender.mode == "relay" and not s.relay.host:
        raise ConfigError(f'{s.source}: relay.host: required when sender.mode = "relay"')
    if bool(s.dkim.key_file) and not (s.dkim.domain and s.dkim.selector):
        raise ConfigError(f"{s.source}: dkim: key_file needs domain and selector too")
    for i, url in enumerate(s.webhooks.urls):
        if not url.startswith(("https://", "http://")) or len(url) > 2000:
            raise ConfigError(f"{s.source}: webhooks.urls[{i}]: not an http(s) URL: {url!r}")
    if s.signup.url and not s.signup.url.startswith(("https://", "http://")):
        raise ConfigError(f"{s.source}: signup.url: not an http(s) URL: {s.signup.url!r}")
    if s.signup.url and not s.signup.from_address:
        raise ConfigError(f"{s.source}: signup.from_address: required when signup.url is set")
    if s.webhooks.concurrency < 1 or s.webhooks.timeout <= 0 or s.webhooks.events_per_post < 1:
        raise ConfigError(
            f"{s.source}: webhooks: concurrency, timeout and events_per_post must be more than 0"
        )
    for domain, lim in s.limits.items():
        if lim.connections < 1:
            raise ConfigError(f"{s.source}: limits.{domain}.connections: must be at least 1")
        if lim.messages_per_connection < 1:
            raise ConfigError(
                f"{s.source}: limits.{domain}.messages_per_connection: must be at least 1"
            )


def _limits(source: str, raw: Any) -> dict[str, Limits]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [limits] must be a table of tables")
    default = _section(source, "limits.default", Limits, raw.get("default", {}))
    out = {"default": default}
    for domain, table in raw.items():
        if domain == "default":
            continue
        merged = {**dataclasses.asdict(default), **(table if isinstance(table, dict) else {})}
        if not isinstance(table, dict):
            raise ConfigError(f'{source}: [limits."{domain}"] must be a table')
        out[domain.lower()] = _section(source, f"limits.{domain}", Limits, merged)
    return out


def _routes(source: str, raw: Any) -> dict[str, tuple[str, ...]]:
    """``[routes]``: a transport map, domain -> "host[:port]" or a list (skips MX lookup)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [routes] must be a table")
    out = {}
    for domain, value in raw.items():
        if isinstance(value, str):
            value = [value]
        value = _coerce(f"{source}: routes.{domain}", tuple[str, ...], value)
        out[domain.lower()] = value
    return out


def parse_settings(data: Mapping[str, Any], source: str, base_dir: Path = Path(".")) -> Settings:
    """Build validated Settings from parsed TOML (a dict); ``source`` names it in errors."""
    kwargs: dict[str, Any] = {"source": source, "base_dir": base_dir}
    for name, raw in data.items():
        if name in _SECTIONS:
            kwargs[name] = _section(source, name, _SECTIONS[name], raw)
        elif name == "limits":
            kwargs["limits"] = _limits(source, raw)
            kwargs["limits_set"] = {  # which keys each domain's table sets (shaping precedence)
                d.lower(): frozenset(t) for d, t in raw.items() if isinstance(t, dict)
            }
        elif name == "routes":
            kwargs["routes"] = _routes(source, raw)
        elif name == "providers":  # checked with the rule pack (bulkmail.shaping.pack)
            kwargs["providers"] = raw
        else:
            known = ", ".join([*_SECTIONS, "limits", "routes", "providers"])
            raise ConfigError(f"{source}: [{name}]: unknown section (known: {known})")
    settings = Settings(**kwargs)
    # A relative SQLite path in the file is relative to the file's folder, like its other
    # paths; one in $BULKMAIL_DATABASE_URL is relative to the current folder.
    env_url = os.environ.get("BULKMAIL_DATABASE_URL")
    url = absolute_sqlite_url(env_url, Path.cwd()) if env_url else None
    url = url or absolute_sqlite_url(settings.database.url, base_dir)
    settings = dataclasses.replace(settings, database=DatabaseSettings(url=url))
    _validate(settings)
    from bulkmail.shaping.pack import load_pack

    load_pack(settings)  # a bad rules_file or [providers] table is a config error now
    return settings


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load the config file (see the module docstring for where it is looked for)."""
    explicit = path is not None or "BULKMAIL_CONFIG" in os.environ
    chosen = Path(path or os.environ.get("BULKMAIL_CONFIG") or DEFAULT_PATH)
    if not chosen.exists():
        if explicit:
            raise ConfigError(f"{chosen}: config file not found")
        return parse_settings({}, "<defaults>")
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{chosen}: cannot read: {exc}") from None
    return parse_settings(data, str(chosen), chosen.resolve().parent)
