"""A small world for end-to-end send tests: a DNS server, SMTP servers on 127.0.0.x, a config
file, a database with a list, and helpers to build campaigns and look at the outcome.

Each test says how the world misbehaves right where it is written, e.g.
``world.mx("example.test", (10, "127.0.0.2"), script=Script(greylist=True))``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.campaigns import create_campaign
from bulkmail.config import Settings, load_settings
from bulkmail.db.engine import Database
from bulkmail.db.models import Delivery
from bulkmail.delivery.runner import SendReport, send_campaign
from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.peers.smtp import Received, SmtpServer, free_port
from bulkmail.signing.keys import dns_txt_value, generate_private_key, load_private_key, split_txt

SECRET = "world-secret-0123456789abcdef"
SENDING_DOMAIN = "news.test"
ALL_HOSTS = tuple(f"127.0.0.{n}" for n in range(2, 14))

_KEY: bytes | None = None


def dkim_key() -> bytes:
    """One RSA-2048 key for the whole session (generating one costs ~100 ms)."""
    global _KEY
    if _KEY is None:
        _KEY = generate_private_key("rsa", 2048)
    return _KEY


@dataclass
class World:
    root: Path
    db_url: str
    zone: Zone
    dns: DnsServer
    port: int
    servers: dict[str, SmtpServer] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    list_name: str = "news"

    # -- the network ------------------------------------------------------------------------
    def server(self, ip: str, **kwargs: Any) -> SmtpServer:
        """Start (or restart with new behaviour) the SMTP server at ``ip``."""
        if ip in self.servers:
            self.servers.pop(ip).stop()
        server = SmtpServer(ip, self.port, **kwargs).start()
        self.servers[ip] = server
        return server

    def mx(self, domain: str, *hosts: tuple[int, str], serve: bool = True, **kwargs: Any) -> None:
        """Publish MX records for ``domain`` (preference, ip) and start a server on each ip."""
        for pref, ip in hosts:
            name = f"mx-{ip.replace('.', '-')}.{SENDING_DOMAIN}"
            self.zone.add(domain, "MX", f"{pref} {name}.")
            self.zone.add(name, "A", ip)
            if serve and ip not in self.servers:
                self.server(ip, **kwargs)

    def received(self) -> list[Received]:
        return [m for s in self.servers.values() for m in s.messages]

    def recipients_received(self) -> list[str]:
        return sorted(r for m in self.received() for r in m.rcpt_tos)

    # -- configuration ----------------------------------------------------------------------
    def configure(self, section: str, **values: Any) -> None:
        self.overrides.setdefault(section, {}).update(values)

    def config_path(self) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "database": {"url": self.db_url},
            "sender": {
                "helo": f"mail.{SENDING_DOMAIN}",
                "port": self.port,
                "return_path_domain": f"bounces.{SENDING_DOMAIN}",
                "tls": "off",
            },
            "dns": {"nameservers": ["127.0.0.1"], "port": self.dns.port, "timeout": 1.0},
            "dkim": {"domain": SENDING_DOMAIN, "selector": "s1", "key_file": "s1.pem"},
            "retry": {"intervals": ["1s"], "max_age": "1h"},
            "timeouts": {
                "connect": 2.0,
                "greeting": 5.0,
                "mail": 5.0,
                "rcpt": 5.0,
                "data_init": 5.0,
                "data_block": 5.0,
                "data_end": 5.0,
                "session": 60.0,
            },
            "unsubscribe": {"url": "http://127.0.0.1:8080/u", "mailto": f"unsub@{SENDING_DOMAIN}"},
        }
        for section, values in self.overrides.items():
            sections.setdefault(section, {}).update(values)
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        path = self.root / "bulkmail.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def settings(self) -> Settings:
        return load_settings(self.config_path())

    def db(self) -> Database:
        return Database(self.db_url)

    # -- audience and campaigns -------------------------------------------------------------
    def subscribers(self, emails: list[str]) -> None:
        path = self.root / f"people-{time.monotonic_ns()}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["email", "name"])
            writer.writerows([e, f"Person {i}"] for i, e in enumerate(emails))
        db = self.db()
        try:
            create_list(db, self.list_name)
        except Exception:  # noqa: BLE001 - already there
            pass
        result = import_csv(db, self.list_name, path)
        assert not result.rejected, result.rejected
        db.dispose()

    def campaign(self, template: str = "newsletter") -> int:
        db = self.db()
        c = create_campaign(
            db,
            self.settings(),
            name="test",
            list_name=self.list_name,
            subject="Hello {{ subscriber.name }}",
            from_header=f"News <news@{SENDING_DOMAIN}>",
            template=template,
        )
        db.dispose()
        return c.id

    def send(self, campaign_id: int, wait: bool = False, workers: int = 1) -> SendReport:
        db = self.db()
        try:
            return send_campaign(
                self.settings(),
                db,
                campaign_id,
                wait=wait,
                workers=workers,
                config_path=str(self.config_path()),
            )
        finally:
            db.dispose()

    def states(self, campaign_id: int) -> dict[str, Delivery]:
        db = self.db()
        with db.session() as s:
            rows = s.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)).all()
        db.dispose()
        return {d.email: d for d in rows}

    def sql(self, query: str, **params: Any) -> list[Any]:
        db = self.db()
        with db.session() as s:
            result = s.execute(text(query), params)
            rows = list(result.all()) if result.returns_rows else []
        db.dispose()
        return rows

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def world(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("BULKMAIL_SECRET", SECRET)
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)
    key = dkim_key()
    (tmp_path / "s1.pem").write_bytes(key)
    zone = Zone()
    zone.add(
        f"s1._domainkey.{SENDING_DOMAIN}", "TXT", split_txt(dns_txt_value(load_private_key(key)))
    )
    with DnsServer(zone) as dns:
        w = World(tmp_path, db_url, zone, dns, free_port(ALL_HOSTS))
        try:
            yield w
        finally:
            w.stop()
