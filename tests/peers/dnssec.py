"""A DNSSEC-validating resolver on loopback for the DANE tests: Debian's ``unbound`` serving
zones from files (``auth-zone``, for-upstream: its own recursion answers from them and the
validator checks them), one of them signed with BIND's ``dnssec-keygen``/``dnssec-signzone``
and trusted through a ``trust-anchor-file``. Answers from the signed zone carry AD; answers
from an unsigned zone do not; a zone whose signatures do not match is SERVFAIL (bogus).

Usage::

    with Resolver(tmp_path, "127.0.0.30") as r:
        r.signed("dane.test", ["@ MX 10 mx.dane.test.", "mx A 127.0.0.2", ...])
        r.unsigned("plain.test", [...])
        r.start()
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from bulkmail.peers.smtp import free_port

TOOLS = ("unbound", "dnssec-keygen", "dnssec-signzone")


def available() -> bool:
    return all(shutil.which(t) for t in TOOLS)


def _zone_text(origin: str, records: list[str]) -> str:
    head = [
        "$TTL 300",
        f"@ IN SOA ns.{origin}. admin.{origin}. 1 3600 600 86400 300",
        f"@ IN NS ns.{origin}.",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join(head + records) + "\n"


class Resolver:
    """unbound on ``host``:<free port> with the zones added before ``start()``."""

    def __init__(self, root: Path, host: str = "127.0.0.30") -> None:
        self.root = root / "unbound"
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port((host,))
        self.zones: list[tuple[str, Path]] = []
        self.anchors: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None

    def signed(self, origin: str, records: list[str]) -> None:
        """A zone signed with a fresh ECDSA P-256 KSK and ZSK; its KSK is the trust anchor."""
        plain = self.root / f"{origin}.zone"
        plain.write_text(_zone_text(origin, records), encoding="ascii")
        keys = []
        for flags in (["-f", "KSK"], []):
            name = subprocess.run(
                [
                    "dnssec-keygen",
                    "-q",
                    "-a",
                    "ECDSAP256SHA256",
                    *flags,
                    "-K",
                    str(self.root),
                    origin,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            keys.append(self.root / f"{name}.key")
        with plain.open("a", encoding="ascii") as fh:
            for key in keys:
                fh.write(f"$INCLUDE {key}\n")
        signed = self.root / f"{origin}.signed"
        subprocess.run(
            [
                "dnssec-signzone",
                "-q",
                "-S",
                "-K",
                str(self.root),
                "-o",
                origin,
                "-d",
                str(self.root),
                "-f",
                str(signed),
                str(plain),
            ],
            capture_output=True,
            check=True,
            cwd=self.root,
        )
        ksk = keys[0].read_text(encoding="ascii")
        self.anchors += [line for line in ksk.splitlines() if "DNSKEY" in line]
        self.zones.append((origin, signed))

    def unsigned(self, origin: str, records: list[str]) -> None:
        path = self.root / f"{origin}.zone"
        path.write_text(_zone_text(origin, records), encoding="ascii")
        self.zones.append((origin, path))

    def start(self) -> Resolver:
        anchor = self.root / "anchors.key"
        anchor.write_text("\n".join(self.anchors) + "\n", encoding="ascii")
        lines = [
            "server:",
            f"    interface: {self.host}",
            f"    port: {self.port}",
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{self.root}"',
            '    pidfile: ""',
            "    use-syslog: no",
            "    verbosity: 0",
            '    module-config: "validator iterator"',
            f'    trust-anchor-file: "{anchor}"',
            '    local-zone: "test." nodefault',
            "    do-not-query-localhost: no",
            f"    access-control: {self.host}/32 allow",
        ]
        for origin, path in self.zones:
            lines += [
                "auth-zone:",
                f'    name: "{origin}"',
                f'    zonefile: "{path}"',
                "    for-downstream: no",
                "    for-upstream: yes",
            ]
        config = self.root / "unbound.conf"
        config.write_text("\n".join(lines) + "\n", encoding="ascii")
        self._process = subprocess.Popen(
            ["unbound", "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "unbound.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError((self.root / "unbound.log").read_text(errors="replace"))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                if probe.connect_ex((self.host, self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"unbound on {self.host}:{self.port} did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> Resolver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
