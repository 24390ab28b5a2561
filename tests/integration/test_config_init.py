"""``bulkmail config init`` (starter file, DKIM key, DNS records) and ``config check``
(validation, effective values, secrets kept out), through the CLI."""

from __future__ import annotations

import json
import re
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa

from bulkmail.cli.main import cli
from bulkmail.config import load_settings, parse_settings
from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.readiness.dkimcheck import check_dkim
from bulkmail.readiness.lookup import Lookup
from bulkmail.signing import load_private_key

SECRET = "a-distinctive-secret-value-0123456789"


def bulkmail(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKMAIL_SECRET", SECRET)
    monkeypatch.delenv("BULKMAIL_DATABASE_URL", raising=False)


def test_init_writes_a_config_that_loads_and_a_key_keygen_would_name(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "bulkmail.toml"
    config.parent.mkdir()
    out = bulkmail(config, "config", "init", "--domain", "News.Example", "--ip", "203.0.113.25")
    assert out.exit_code == 0, out.output
    key = tmp_path / "etc" / "keys" / "s1._domainkey.news.example.pem"  # as dkim keygen names it
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = load_private_key(key.read_bytes())
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    settings = load_settings(str(config))
    assert settings.dkim.domain == "news.example" and settings.path(settings.dkim.key_file) == key
    assert settings.sender.helo == "mail.news.example"
    assert settings.check.ips == ("203.0.113.25",)  # so the suggested 'bulkmail check' runs
    assert "# EHLO name" in config.read_text(encoding="utf-8")  # commented for a reader
    text = out.stdout
    assert 'bounces.news.example. IN TXT "v=spf1 ip4:203.0.113.25 -all"' in text
    assert '_dmarc.news.example. IN TXT "v=DMARC1; p=none;' in text
    assert "export BULKMAIL_SECRET=$(openssl rand -hex 32)" in text
    assert SECRET not in text


def test_the_printed_dkim_record_published_makes_the_dkim_check_pass(
    tmp_path: Path, dns_zone: Zone, dns_server: DnsServer
) -> None:
    config = tmp_path / "bulkmail.toml"
    out = bulkmail(config, "config", "init", "--domain", "sender.test", "--selector", "k1")
    assert out.exit_code == 0, out.output
    match = re.search(r"^\s*(k1\._domainkey\.sender\.test)\. IN TXT (.+)$", out.stdout, re.M)
    assert match, out.stdout
    dns_zone.add(match.group(1), "TXT", re.findall(r'"([^"]*)"', match.group(2)))
    key = (tmp_path / "keys" / "k1._domainkey.sender.test.pem").read_bytes()
    check = check_dkim(Lookup([dns_server.host], dns_server.port, 1.0), "sender.test", "k1", key)
    assert check.status == "pass", check


def test_init_replaces_nothing_without_force(tmp_path: Path) -> None:
    config = tmp_path / "bulkmail.toml"
    config.write_text("# mine\n", encoding="utf-8")
    out = bulkmail(config, "config", "init", "--domain", "news.example")
    assert out.exit_code == 1 and out.stderr.count("\n") == 1 and "--force" in out.stderr
    assert config.read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / "keys").exists()  # refused before any key was made
    assert bulkmail(config, "config", "init", "--domain", "news.example", "--force").exit_code == 0
    assert load_settings(str(config)).dkim.selector == "s1"
    bad = bulkmail(tmp_path / "other.toml", "config", "init", "--domain", "not a domain")
    assert bad.exit_code == 1 and "--domain 'not a domain'" in bad.stderr


def test_a_bad_ip_is_one_line_and_nothing_is_written_even_with_force(tmp_path: Path) -> None:
    config = tmp_path / "bulkmail.toml"
    config.write_text("# mine\n", encoding="utf-8")
    out = bulkmail(
        config, "config", "init", "--domain", "x.example", "--ip", "300.1.1.1", "--force"
    )
    assert out.exit_code == 1 and out.stderr.count("\n") == 1
    assert "--ip '300.1.1.1'" in out.stderr
    assert config.read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / "keys").exists()


def test_json_names_the_files_and_records(tmp_path: Path) -> None:
    config = tmp_path / "bulkmail.toml"
    out = bulkmail(config, "config", "init", "--domain", "news.example", "--json")
    data = json.loads(out.stdout)
    assert data["config_file"] == str(config.resolve())
    names = {r["name"] for r in data["records"]}
    assert names == {
        "bounces.news.example",
        "mail.news.example",
        "_dmarc.news.example",
        "s1._domainkey.news.example",
    }


def test_check_prints_effective_values_that_load_back_with_secrets_left_out(
    tmp_path: Path, db_url: str
) -> None:
    config = tmp_path / "bulkmail.toml"
    assert bulkmail(config, "config", "init", "--domain", "news.example").exit_code == 0
    text = config.read_text(encoding="utf-8")
    url = db_url.replace("postgres@", "postgres:hunter2@")  # a password in the URL (PostgreSQL)
    config.write_text(text.replace('"sqlite:///bulkmail.db"', json.dumps(url)), encoding="utf-8")
    out = bulkmail(config, "config", "check")
    assert out.exit_code == 0, out.output
    assert SECRET not in out.output and "hunter2" not in out.output
    assert "# $BULKMAIL_SECRET: set" in out.stdout
    shown = tomllib.loads(out.stdout)
    again = parse_settings(shown, "shown", tmp_path)
    loaded = load_settings(str(config))
    assert again.dkim == loaded.dkim and again.limits == loaded.limits
    assert again.sender == loaded.sender and again.retry == loaded.retry
    assert shown["database"]["url"] == loaded.database.url.replace(":hunter2@", ":***@")
    data = json.loads(bulkmail(config, "config", "check", "--json").stdout)
    assert data["problems"] == [] and data["environment"]["BULKMAIL_SECRET"] == "set"


def test_check_fails_with_one_line_per_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bulkmail.toml"
    assert bulkmail(config, "config", "init", "--domain", "news.example").exit_code == 0
    (tmp_path / "keys" / "s1._domainkey.news.example.pem").unlink()
    monkeypatch.delenv("BULKMAIL_SECRET")
    out = bulkmail(config, "config", "check")
    assert out.exit_code == 2
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 2, errors
    assert "BULKMAIL_SECRET is not set" in errors[0]
    assert "s1._domainkey.news.example.pem: cannot read" in errors[1]
    config.write_text(config.read_text(encoding="utf-8") + "\n[sender2]\n", encoding="utf-8")
    broken = bulkmail(config, "config", "check")
    assert broken.exit_code == 2 and broken.stderr.count("\n") == 1
    assert "[sender2]: unknown section" in broken.stderr
