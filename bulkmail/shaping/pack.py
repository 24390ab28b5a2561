"""The provider rule pack: which sites domains roll up to, their limits, and backoff rules.

Three layers, later ones winning key by key: the pack shipped inside the package
(``providers.toml``), the operator's ``[shaping] rules_file`` (same format), and inline
``[providers."name"]`` tables in bulkmail.toml. A provider matches a route when every MX host
ends in one of its ``mx_suffixes``, so all domains hosted by Google share the site
"provider:google" and one set of limits.

Precedence of limits for a domain: its own ``[limits."domain"]`` > the provider rule
(operator's over shipped) > ``[limits.default]``. ``effective_limits`` also says which layer set
each value, for ``bulkmail shaping explain``. Everything here is pure apart from reading files.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulkmail.delivery.retry import parse_duration
from bulkmail.delivery.throttle import parse_rate
from bulkmail.errors import ConfigError, InputError

if TYPE_CHECKING:
    from bulkmail.config import Limits, Settings

__all__ = ["BackoffRule", "Pack", "Provider", "effective_limits", "load_pack", "parse_pack"]

SHIPPED = "bulkmail/shaping/providers.toml"
_PROVIDER_KEYS = {"mx_suffixes", "connections", "messages_per_connection", "rate", "tls"}
_LIMIT_KEYS = ("connections", "messages_per_connection", "rate")
_RULE_KEYS = {"name", "provider", "code", "enhanced", "text", "action", "duration"}
_RULE_KEYS |= {"rate", "connections", "recover"}
_ACTIONS = ("suspend", "throttle")


@dataclass(frozen=True)
class Provider:
    """A mailbox provider: its MX suffixes and the limit values it sets (others: default).
    ``origin`` maps each key set to where it was set (a file name or a config table)."""

    name: str
    mx_suffixes: tuple[str, ...]
    values: Mapping[str, Any]
    origin: Mapping[str, str]

    def matches(self, hosts: Sequence[str]) -> bool:
        """True when every host ends in one of the suffixes (label-wise)."""
        return bool(hosts) and all(
            any(h == s or h.endswith("." + s) for s in self.mx_suffixes) for h in hosts
        )


@dataclass(frozen=True)
class BackoffRule:
    """A reply pattern and what to do to the site for ``duration`` seconds."""

    name: str
    action: str  # "suspend" | "throttle"
    duration: float
    provider: str = ""  # "" = any site
    code: int | None = None
    enhanced: str | None = None
    text: re.Pattern[str] | None = None
    rate: float | None = None  # throttle: messages per second for the whole site
    connections: int | None = None  # throttle: connections for the whole site
    origin: str = ""
    recover: float = 0.0  # then undone in steps over this long (0: at once)


@dataclass(frozen=True)
class Pack:
    providers: Mapping[str, Provider]
    rules: tuple[BackoffRule, ...]

    def provider_for(self, hosts: Sequence[str]) -> Provider | None:
        """The provider hosting all of ``hosts`` (MX names), or None."""
        names = [h.lower().rstrip(".") for h in hosts]
        for provider in self.providers.values():
            if provider.matches(names):
                return provider
        return None


def parse_pack(data: Mapping[str, Any], origin: str, base: Pack | None = None) -> Pack:
    """A Pack from parsed TOML, layered over ``base`` (keys and same-named rules replaced).
    Raises ConfigError naming ``origin`` and the key on anything wrong."""
    providers = dict(base.providers) if base else {}
    rules = {r.name: r for r in base.rules} if base else {}
    for key, value in data.items():
        if key == "providers":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: [providers] must be a table of tables")
            for name, table in value.items():
                providers[name] = _provider(origin, name, table, providers.get(name))
        elif key == "backoff":
            if not isinstance(value, list):
                raise ConfigError(f"{origin}: backoff must be an array of tables ([[backoff]])")
            for i, table in enumerate(value):
                rule = _rule(f"{origin}: backoff[{i}]", table, origin)
                rules[rule.name] = rule
        else:
            raise ConfigError(f"{origin}: [{key}]: unknown section (known: providers, backoff)")
    for rule in rules.values():
        if rule.provider and rule.provider not in providers:
            raise ConfigError(f"{rule.origin}: backoff {rule.name!r}: unknown provider")
    return Pack(providers, tuple(rules.values()))


def _provider(origin: str, name: str, table: Any, base: Provider | None) -> Provider:
    where = f'{origin}: providers."{name}"'
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    values = dict(base.values) if base else {}
    found = dict(base.origin) if base else {}
    suffixes = base.mx_suffixes if base else ()
    for key, value in table.items():
        if key not in _PROVIDER_KEYS:
            known = ", ".join(sorted(_PROVIDER_KEYS))
            raise ConfigError(f"{where}.{key}: unknown key (known: {known})")
        if key == "mx_suffixes":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) and v.strip(". ") for v in value)
            ):
                raise ConfigError(f"{where}.mx_suffixes: expected a list of host suffixes")
            suffixes = tuple(v.strip(". ").lower() for v in value)
        else:
            values[key] = _limit_value(f"{where}.{key}", key, value)
        found[key] = f'{origin} [providers."{name}"]'
    if not suffixes:
        raise ConfigError(f'{where}.mx_suffixes: required (e.g. ["google.com"])')
    return Provider(name, suffixes, values, found)


def _limit_value(where: str, key: str, value: Any) -> Any:
    if key == "tls":
        if value not in ("required", "opportunistic"):
            raise ConfigError(f"{where}: must be one of required, opportunistic, got {value!r}")
        return value
    if key == "rate":
        try:
            return parse_rate(value)
        except InputError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a whole number of at least 1, got {value!r}")
    return value


def _rule(where: str, table: Any, origin: str) -> BackoffRule:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - _RULE_KEYS
    if unknown:
        known = ", ".join(sorted(_RULE_KEYS))
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (known: {known})")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: required, a non-empty string")
    action = table.get("action")
    if action not in _ACTIONS:
        raise ConfigError(f"{where}.action: must be one of {', '.join(_ACTIONS)}, got {action!r}")
    try:
        duration = parse_duration(table.get("duration", ""))
        recover = parse_duration(table.get("recover", 0))
        rate = parse_rate(table["rate"]) if "rate" in table else None
    except InputError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not duration > 0:
        raise ConfigError(f"{where}.duration: must be more than 0")
    conns = table.get("connections")
    if conns is not None and (isinstance(conns, bool) or not isinstance(conns, int) or conns < 1):
        raise ConfigError(f"{where}.connections: expected a whole number of at least 1")
    if action == "throttle" and rate is None and conns is None:
        raise ConfigError(f"{where}: a throttle needs rate or connections")
    code = table.get("code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise ConfigError(f"{where}.code: expected a reply code like 421")
    enhanced, text = table.get("enhanced"), table.get("text")
    if code is None and enhanced is None and text is None:
        raise ConfigError(f"{where}: needs at least one of code, enhanced, text")
    try:
        pattern = re.compile(text, re.IGNORECASE) if text is not None else None
    except (re.error, TypeError) as exc:
        raise ConfigError(f"{where}.text: not a regular expression: {exc}") from None
    return BackoffRule(
        name=name,
        action=action,
        duration=duration,
        provider=str(table.get("provider", "")),
        code=code,
        enhanced=str(enhanced) if enhanced is not None else None,
        text=pattern,
        rate=rate,
        connections=conns,
        origin=origin,
        recover=recover,
    )


def shipped_pack() -> Pack:
    """The pack inside the package."""
    text = resources.files("bulkmail.shaping").joinpath("providers.toml").read_text("utf-8")
    return parse_pack(tomllib.loads(text), SHIPPED)


def load_pack(settings: Settings) -> Pack:
    """Shipped pack, then ``[shaping] rules_file``, then inline ``[providers]``."""
    pack = shipped_pack()
    if settings.shaping.rules_file:
        path: Path = settings.path(settings.shaping.rules_file)
        where = f"{settings.source}: shaping.rules_file"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{where}: {path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: {path}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: {path}: cannot read: {exc}") from None
        pack = parse_pack(data, str(path), pack)
    if settings.providers:
        pack = parse_pack({"providers": dict(settings.providers)}, settings.source, pack)
    return pack


def effective_limits(
    settings: Settings, domain: str, provider: Provider | None
) -> tuple[Limits, dict[str, str]]:
    """The limits for ``domain`` on ``provider``'s site and where each value came from, key
    by key: the keys its ``[limits."domain"]`` sets > the provider rule > [limits.default]."""
    name = domain.lower()
    origin = dict.fromkeys(_LIMIT_KEYS, f"{settings.source} [limits.default]")
    origin["tls"] = f"{settings.source} [sender] tls"
    values: dict[str, Any] = {}
    if provider is not None:
        values = {k: v for k, v in provider.values.items() if k in _LIMIT_KEYS}
        origin |= {k: provider.origin[k] for k in provider.values}
    own = settings.limits.get(name) if name != "default" else None
    if own is not None:
        for key in own_keys(settings, name):
            values[key] = getattr(own, key)
            origin[key] = f'{settings.source} [limits."{name}"]'
    return dataclasses.replace(own or settings.limits["default"], **values), origin


def own_keys(settings: Settings, domain: str) -> list[str]:
    """The limit keys (connections, messages_per_connection, rate) ``[limits."domain"]``
    sets itself."""
    if domain.lower() == "default":
        return []
    return [k for k in _LIMIT_KEYS if k in settings.limits_set.get(domain.lower(), ())]


def provider_tls(provider: Provider | None) -> str:
    """What the provider rule says of TLS ("" = not set)."""
    return str(provider.values.get("tls", "")) if provider else ""
