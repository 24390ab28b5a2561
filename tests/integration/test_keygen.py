"""``bulkmail dkim keygen``: the key file it writes and the record it prints, proven by
publishing that record in a DNS server on loopback and running the DKIM check against it."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from bulkmail.peers.dns import DnsServer, Zone
from bulkmail.readiness.dkimcheck import check_dkim
from bulkmail.readiness.lookup import Lookup
from bulkmail.signing import load_private_key, public_key_matches

DOMAIN = "sender.test"


def keygen(*args: str) -> Result:
    return CliRunner().invoke(cli, ["dkim", "keygen", *args], catch_exceptions=False)


def printed_record(output: str) -> tuple[str, list[str]]:
    """The (name, strings) of the zone-file line keygen printed."""
    match = re.search(r"^(\S+)\. IN TXT (.+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1), re.findall(r'"([^"]*)"', match.group(2))


def printed_key_file(output: str) -> Path:
    match = re.search(r'key_file = "([^"]+)"', output)
    assert match, output
    return Path(match.group(1))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_the_printed_record_published_in_dns_makes_the_dkim_check_pass(
    algorithm: str, tmp_path: Path, dns_zone: Zone, dns_server: DnsServer
) -> None:
    result = keygen(
        "--domain",
        DOMAIN,
        "--selector",
        "k1",
        "--algorithm",
        algorithm,
        "--out",
        str(tmp_path / "keys"),
    )
    assert result.exit_code == 0, result.output
    name, strings = printed_record(result.output)
    dns_zone.add(name, "TXT", strings)

    lookup = Lookup([dns_server.host], dns_server.port, 1.0)
    check = check_dkim(lookup, DOMAIN, "k1", printed_key_file(result.output).read_bytes())

    assert name == f"k1._domainkey.{DOMAIN}"
    assert check.status == "pass", check
    assert "test signature verifies" in check.detail


def test_the_record_comes_in_strings_of_at_most_255_characters(tmp_path: Path) -> None:
    result = keygen("--domain", DOMAIN, "--selector", "k1", "--out", str(tmp_path), "--json")

    data = json.loads(result.output)
    assert len(data["strings"]) == 2 and all(len(s) <= 255 for s in data["strings"])
    joined = "".join(data["strings"])
    assert joined.startswith("v=DKIM1; k=rsa; p=")
    key = load_private_key(Path(data["key_file"]).read_bytes())
    assert public_key_matches(key, joined.split("p=")[1])
    assert data["name"] == f"k1._domainkey.{DOMAIN}" and data["type"] == "TXT"


def test_the_private_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    result = keygen(
        "--domain",
        DOMAIN,
        "--selector",
        "k1",
        "--algorithm",
        "ed25519",
        "--out",
        str(tmp_path / "new" / "keys"),
    )

    path = printed_key_file(result.output)
    assert path.parent == tmp_path / "new" / "keys"
    assert mode(path) == 0o600
    assert "(mode 0600)" in result.output


def test_an_existing_key_is_never_replaced_without_force(tmp_path: Path) -> None:
    first = keygen(
        "--domain", DOMAIN, "--selector", "k1", "--algorithm", "ed25519", "--out", str(tmp_path)
    )
    path = printed_key_file(first.output)
    original = path.read_bytes()

    again = keygen(
        "--domain", DOMAIN, "--selector", "k1", "--algorithm", "ed25519", "--out", str(tmp_path)
    )

    assert again.exit_code == 1
    assert again.stderr.startswith("bulkmail: error: ") and "--force" in again.stderr
    assert "IN TXT" not in again.output
    assert path.read_bytes() == original


def test_force_replaces_the_key_keeping_mode_0600(tmp_path: Path) -> None:
    first = keygen(
        "--domain", DOMAIN, "--selector", "k1", "--algorithm", "ed25519", "--out", str(tmp_path)
    )
    path = printed_key_file(first.output)
    original = path.read_bytes()
    path.chmod(0o644)

    again = keygen(
        "--domain",
        DOMAIN,
        "--selector",
        "k1",
        "--algorithm",
        "ed25519",
        "--out",
        str(tmp_path),
        "--force",
    )

    assert again.exit_code == 0, again.output
    assert path.read_bytes() != original
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--bits", "512"], "at least 1024"),
        (["--domain", "bad domain!"], "--domain"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_write_nothing(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    base = {"--domain": DOMAIN, "--selector": "k1", "--out": str(tmp_path / "keys")}
    for option, value in zip(args[::2], args[1::2], strict=True):
        base[option] = value
    result = keygen(*[part for item in base.items() for part in item])

    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())
