"""MTA-STS (RFC 8461) as pure functions: the TXT record, the policy file, MX pattern matching.

No I/O here (``mtasts.py`` does the lookups, the HTTPS fetch and the cache), so every rule of
the RFC can be tested on strings:

- TXT (section 3.1): ``v=STSv1; id=<1-32 alphanumerics>``, fields separated by ";" with
  optional spaces, unknown fields ignored. More than one record starting ``v=STSv1`` means no
  policy (the RFC: "senders MUST assume it does not implement MTA-STS").
- Policy (section 3.2): CRLF (or LF) separated ``key: value`` lines; ``version: STSv1`` and
  ``mode`` (enforce | testing | none) and ``max_age`` (0 .. 31557600 seconds) are required, ``mx``
  may repeat and is required unless mode is none; unknown keys are ignored; the first of a
  repeated single key wins (RFC: "the first such key-value pair" is used).
- Matching (section 4.1): an ``mx`` pattern matches the MX host name case-insensitively; a
  leading ``*.`` matches exactly one left-most label (``*.example.com`` matches
  ``mx.example.com``, not ``example.com`` nor ``a.b.example.com``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["POLICY_PREFIX", "Policy", "PolicyError", "mx_matches", "parse_policy", "parse_txt"]

POLICY_PREFIX = "MTA-STS policy of "  # every MTA-STS deferral's text starts so (reports)
MAX_AGE_LIMIT = 31_557_600  # a year (RFC 8461 3.2)
MODES = ("enforce", "testing", "none")

_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_KEY = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_MAX_AGE = re.compile(r"^[0-9]{1,10}$")
_PATTERN = re.compile(r"^(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}$")


class PolicyError(ValueError):
    """The policy file is not a valid MTA-STS policy; the message says which line or key."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One parsed policy. ``mx`` holds lowercase patterns, maybe with a leading ``*.``."""

    mode: str
    mx: tuple[str, ...]
    max_age: int

    def allows(self, host: str) -> bool:
        """True when the MX host name matches one of the policy's ``mx`` patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def parse_txt(records: list[str] | tuple[str, ...]) -> str | None:
    """The policy id of the ``_mta-sts`` TXT records, or None: no (usable) MTA-STS record.

    ``records``: each TXT record's strings already joined. Records not starting with
    ``v=STSv1`` are other uses of the name and are skipped; two STSv1 records, or one without
    a valid id, mean no policy.
    """
    found = [r for r in records if re.match(r"^v=STSv1\s*(;|$)", r)]
    if len(found) != 1:
        return None
    policy_id = None
    for field in found[0].split(";")[1:]:
        key, sep, value = field.strip().partition("=")
        if not sep:
            if key:
                return None
            continue
        if key == "id" and policy_id is None:
            policy_id = value.strip()
    return policy_id if policy_id is not None and _ID.match(policy_id) else None


def parse_policy(text: str) -> Policy:
    """The Policy in an ``mta-sts.txt`` body; ``PolicyError`` naming what is wrong."""
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key):
            raise PolicyError(f"line {number}: not a key: value line: {line[:60]!r}")
        if key == "mx":
            pattern = value.lower().rstrip(".")
            if not _PATTERN.match(pattern):
                raise PolicyError(f"line {number}: mx: {value[:60]!r} is not a host pattern")
            mx.append(pattern)
        else:
            values.setdefault(key, value)
    if values.get("version") != "STSv1":
        raise PolicyError(f"version: {values.get('version')!r} is not STSv1")
    mode = values.get("mode")
    if mode not in MODES:
        raise PolicyError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    age = values.get("max_age", "")
    if not _MAX_AGE.match(age) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age: {age!r} is not a number of seconds up to {MAX_AGE_LIMIT}")
    if not mx and mode != "none":
        raise PolicyError(f"mx: a policy in mode {mode} needs at least one mx pattern")
    return Policy(mode, tuple(dict.fromkeys(mx)), int(age))


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: ``host`` (an MX name) matches ``pattern``; "*." stands for one label."""
    name = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = name.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return name == pattern
