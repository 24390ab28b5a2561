"""Who holds a lease: engine owner ids, and which holders are dead, so their work resumes at once.

Rows and site slots are leased to an *owner*, one per engine. A crashed engine's leases would
hold its work for ``lease_seconds`` (300 s by default), so every engine also judges the other
holders and reclaims what the dead ones held at once (``dead_owners``):

- an owner whose process is known dead *on this host* (``os.kill(pid, 0)`` fails, or it is a
  zombie) is dead now: a ``kill -9`` and a restart resume within a second;
- an owner whose heartbeat (``workers``, written every second) is older than
  ``STALE_HEARTBEAT_SECONDS``, or that has none, is dead too: another machine's crash costs
  30 s, not the lease.

An owner id is ``"<host>:<pid>:<random>:<tag>"``. The tag names this kernel boot and pid
namespace (a hash of ``/proc/sys/kernel/random/boot_id`` and ``/proc/self/ns/pid``), so "on
this host" means "in this process table", not merely "with this host name": two machines or
two containers both called ``web1`` never judge each other's pids. Without ``/proc`` the tag
is ``-`` and owners are judged by their heartbeat only.

An engine wrongly judged dead (stopped, or stalled past the heartbeat window) is not a second
sender: its lease renewal tells it which rows it lost, and it drops them (``engine._renew``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

STALE_HEARTBEAT_SECONDS = 30.0  # a holder not heard from for this long is dead (clock skew < 20 s)
NO_TAG = "-"


@functools.cache
def host_tag() -> str:
    """8 hex digits naming this boot and pid namespace, or ``-`` where /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return NO_TAG
    return hashlib.sha256(f"{boot}/{pidns}".encode()).hexdigest()[:8]


def host_name() -> str:
    return socket.gethostname()[:40].replace(":", "_")


def owner_id() -> str:
    """A lease owner name unique to this engine: host, pid, a random part, the host tag."""
    return f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{host_tag()}"


def local_pid(owner: str) -> int | None:
    """The pid of ``owner`` if it ran in this process table (same host, boot and namespace)."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[3] == NO_TAG or parts[3] != host_tag():
        return None
    if parts[0] != host_name() or not parts[1].isdigit():
        return None
    return int(parts[1])


def process_gone(pid: int) -> bool:
    """True if no process ``pid`` runs here (a zombie counts as gone: it sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def dead_here(owner: str) -> bool:
    """True if ``owner`` is an engine of this host whose process has gone."""
    pid = local_pid(owner)
    return pid is not None and process_gone(pid)


def dead_owners(
    holders: Iterable[str],
    seen: Mapping[str, float],
    *,
    me: str,
    now: float,
    stale_after: float = STALE_HEARTBEAT_SECONDS,
    gone: Callable[[str], bool] = dead_here,
) -> set[str]:
    """The holders (of rows or slots) that are dead: gone on this host, or whose heartbeat
    (``seen``: owner -> last heartbeat) is missing or older than ``stale_after``."""
    dead = set()
    for owner in set(holders) - {me}:
        beat = seen.get(owner)
        if beat is None or beat < now - stale_after or gone(owner):
            dead.add(owner)
    return dead
