"""``bulkmail config init`` and ``config check``: a working start in one command, and the
effective configuration shown back with secrets kept out.

``init`` writes a commented starter ``bulkmail.toml`` and an RSA-2048 DKIM key (with
``readiness.keygen``, so the key file is named as ``dkim keygen`` names it and written 0600),
and returns the DNS records to publish: the DKIM key, SPF for the return-path domain and the
EHLO name, DMARC for the From domain. It refuses to replace an existing config or key (unless
``force``), and checks the config it wrote by loading it, so what it writes always loads.

``check`` loads the configuration the normal way (every problem one line), then tries what
loading does not: the secret variable is set and long enough, the DKIM key files load, the
relay password is set in relay mode. Secrets are never printed: the values taken from the
environment are shown as "set" or "NOT SET", and a database URL's password as ``***``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkmail.config import Settings, load_settings
from bulkmail.db.engine import redact
from bulkmail.errors import BulkmailError, InputError
from bulkmail.readiness.keygen import GeneratedKey, generate_dkim_key
from bulkmail.readiness.rules import spf_record_for, txt_record_text

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+")

STARTER = """\
# bulkmail configuration, written by 'bulkmail config init'. Every key has a default;
# 'bulkmail config check' shows the effective values. Secrets never go in this file:
#   export BULKMAIL_SECRET=$(openssl rand -hex 32)   # HMAC key for unsubscribe/bounce tokens
# Relative paths are relative to this file's folder.

[database]
url = "sqlite:///bulkmail.db"          # or postgresql+psycopg://user@host/db
                                       # ($BULKMAIL_DATABASE_URL overrides it)

[sender]
helo = "{helo}"{helo_pad}# EHLO name: should equal your sending IP's PTR name
mode = "mx"                            # "mx" (direct to MX) or "relay" (smart host below)
tls = "opportunistic"                  # "opportunistic" | "required" | "off"
mta_sts = "enforce"                    # recipients' MTA-STS: "enforce" | "testing-only" | "off"
# dane = "on"                          # DANE: needs a validating resolver in [dns]
return_path_domain = "{return_path}"{rp_pad}# VERP: bounces+TOKEN@this (needs an MX)

# [relay]                              # with mode = "relay"
# host = "smtp.provider.example"
# port = 587
# security = "starttls"                # "starttls" | "tls" (implicit, 465)
# username = "news"
# password_env = "BULKMAIL_RELAY_PASSWORD"

[dkim]
domain = "{domain}"
selector = "{selector}"
key_file = "{key_file}"
required = true                        # no key: sending commands refuse

[limits.default]
connections = 10                       # concurrent sessions per destination site
messages_per_connection = 100
rate = 0                               # messages per second per destination, 0 = no limit

[retry]
intervals = ["30m", "1h", "2h", "4h"]  # the last repeats
max_age = "5d"                         # then the delivery expires

[unsubscribe]
url = "https://{domain}/unsubscribe"   # one-click base URL, served by 'bulkmail serve'
mailto = "unsubscribe@{domain}"
secret_env = "BULKMAIL_SECRET"

[schedule]
timezone = "UTC"                       # for --at times written without an offset

[check]
ips = {ips}{ips_pad}# sending IPs that 'bulkmail check' checks
"""


def _pad(line: str) -> str:
    """Spaces that put the comment after ``line`` in column 40, as the other lines have it."""
    return " " * max(1, 39 - len(line))


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    value: str
    why: str

    @property
    def line(self) -> str:
        return txt_record_text(self.name, [self.value])


@dataclass(frozen=True)
class Started:
    config_file: Path
    key: GeneratedKey
    records: list[DnsRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_file": str(self.config_file),
            "key_file": str(self.key.key_file),
            "records": [
                {"name": r.name, "type": r.type, "value": r.value, "why": r.why}
                for r in self.records
            ]
            + [{**self.key.as_dict(), "why": "DKIM public key"}],
            "secret": "export BULKMAIL_SECRET=$(openssl rand -hex 32)",
        }


def _host(what: str, value: str) -> str:
    cleaned = value.strip().rstrip(".").lower()
    if not _HOST.fullmatch(cleaned):
        raise InputError(f"--{what} {value!r}: not a domain name")
    return cleaned


def init_config(
    path: Path,
    domain: str,
    *,
    selector: str = "s1",
    helo: str | None = None,
    ips: tuple[str, ...] = (),
    force: bool = False,
) -> Started:
    """Write the starter config at ``path`` and a DKIM key in ``keys/`` beside it."""
    domain = _host("domain", domain)
    helo = _host("helo", helo) if helo else f"mail.{domain}"
    for ip in ips:  # checked before anything is written: a bad --ip leaves no half-made setup
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InputError(f"--ip {ip!r}: not an IP address") from None
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to replace it")
    keys = path.parent / "keys"
    key = generate_dkim_key(domain, selector, out_dir=keys, force=force)
    return_path = f"bounces.{domain}"
    text = STARTER.format(
        helo=helo,
        helo_pad=_pad(f'helo = "{helo}"'),
        return_path=return_path,
        rp_pad=_pad(f'return_path_domain = "{return_path}"'),
        domain=domain,
        selector=key.selector,
        key_file=f"keys/{key.key_file.name}",
        ips=json.dumps(list(ips)),
        ips_pad=_pad(f"ips = {json.dumps(list(ips))}"),
    )
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_text(text, encoding="utf-8")
        load_settings(str(partial))  # what init writes always loads
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    spf = spf_record_for(ips) if ips else f"v=spf1 a:{helo} -all"
    records = [
        DnsRecord(return_path, "TXT", spf, "SPF for the envelope sender (return path)"),
        DnsRecord(helo, "TXT", spf, "SPF for the EHLO name"),
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}",
            "DMARC; tighten p=none to quarantine once reports look right",
        ),
    ]
    return Started(path.resolve(), key, records)


# -- check ------------------------------------------------------------------------------------


@dataclass
class Checked:
    settings: Settings
    environment: dict[str, str]  # variable -> "set" / "NOT SET" (never the value)
    problems: list[str]


def check_config(path: str | None) -> Checked:
    """Load the config (ConfigError on a problem loading finds) and try what it names."""
    from bulkmail.delivery.pipeline import load_signers

    settings = load_settings(path)
    env_names = [settings.unsubscribe.secret_env, "BULKMAIL_DATABASE_URL"]
    if settings.sender.mode == "relay":
        env_names.append(settings.relay.password_env)
    if settings.bounces.host:
        env_names.append(settings.bounces.password_env)
    environment = {n: "set" if os.environ.get(n) else "NOT SET" for n in env_names}
    problems = []
    for attempt in (settings.secret, lambda: load_signers(settings)):
        try:
            attempt()
        except BulkmailError as exc:
            problems.append(str(exc))
    if (
        settings.sender.mode == "relay"
        and settings.relay.username
        and not settings.relay_password()
    ):
        problems.append(
            f"{settings.source}: relay.password_env: {settings.relay.password_env} is not set"
        )
    return Checked(settings, environment, problems)


def effective(settings: Settings) -> dict[str, Any]:
    """The settings as plain data (TOML's shape), the database URL's password redacted."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if f.name in ("source", "base_dir", "limits_set"):  # limits_set: derived from [limits]
            continue
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            data[f.name] = dataclasses.asdict(value)  # type: ignore[arg-type]
        elif f.name == "limits":
            data[f.name] = {k: dataclasses.asdict(v) for k, v in value.items()}
        elif f.name == "providers":  # inline [providers."name"] tables, as written
            data[f.name] = {k: dict(v) for k, v in value.items()}
        else:
            data[f.name] = {k: list(v) for k, v in value.items()}
    data["database"]["url"] = redact(data["database"]["url"])
    return data


def to_toml(data: Mapping[str, Any]) -> str:
    """``effective`` as TOML text (tables of scalars and lists; [limits.X] sub-tables)."""
    lines: list[str] = []
    for name, table in data.items():
        if name in ("limits", "providers"):
            for domain, values in table.items():
                lines += [f"[{name}.{_key(domain)}]", *_pairs(values), ""]
            continue
        lines += [f"[{name}]", *_pairs(table), ""]
    return "\n".join(lines)


def _pairs(table: Mapping[str, Any]) -> list[str]:
    return [f"{_key(k)} = {_value(v)}" for k, v in table.items()]


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
