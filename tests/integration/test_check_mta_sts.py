"""``bulkmail check`` shows the sender's own domain's MTA-STS policy and TLS-RPT record: the
DNS peer publishes the TXT records, an HTTPS peer with a trustme certificate (trusted through
``[sender] ca_file``) serves the policy."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme

from bulkmail.peers.https import HttpsServer
from bulkmail.peers.smtp import free_port
from bulkmail.readiness.stscheck import check_mta_sts, check_tls_rpt
from tests.integration.test_check import DOMAIN, HELO, Sender, assert_result, rsa_pem, sender

__all__ = ["rsa_pem", "sender"]  # the fixtures, used by name

POLICY_IP = "127.0.0.21"
GOOD = f"version: STSv1\nmode: enforce\nmx: {HELO}\nmax_age: 604800\n"


@pytest.fixture
def sts(
    sender: Sender, tls_ca: trustme.CA, tls_server_context: Callable[..., ssl.SSLContext]
) -> Iterator[tuple[HttpsServer, str]]:
    ca = sender.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    server = HttpsServer(
        POLICY_IP, free_port((POLICY_IP,)), tls_server_context(f"mta-sts.{DOMAIN}")
    )
    sender.zone.add(f"mta-sts.{DOMAIN}", "A", POLICY_IP)
    with server:
        yield server, str(ca)


def run(sender: Sender, sts: tuple[HttpsServer, str]):  # type: ignore[no-untyped-def]
    return check_mta_sts(sender.lookup(), DOMAIN, ca_file=sts[1], port=sts[0].port)


def test_no_mta_sts_record_passes_with_the_records_to_publish(sender: Sender) -> None:
    assert_result(
        check_mta_sts(sender.lookup(), DOMAIN), "pass", "no MTA-STS policy", remedy="v=STSv1"
    )


def test_a_published_policy_covering_the_mx_passes_with_its_summary(
    sender: Sender, sts: tuple[HttpsServer, str]
) -> None:
    sts[0].policy(DOMAIN, GOOD)
    sender.zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=2026")
    assert_result(run(sender, sts), "pass", "id 2026, mode enforce", f"mx {HELO}")


def test_a_policy_not_covering_the_mx_fails(sender: Sender, sts: tuple[HttpsServer, str]) -> None:
    sts[0].policy(DOMAIN, GOOD.replace(HELO, "*.elsewhere.test"))
    sender.zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=2026")
    assert_result(run(sender, sts), "fail", f"MX {HELO} not covered", remedy="mx:")


def test_a_record_whose_policy_cannot_be_fetched_fails(
    sender: Sender, sts: tuple[HttpsServer, str]
) -> None:
    sender.zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=2026")  # no policy served: 404
    assert_result(run(sender, sts), "fail", "cannot be fetched", "HTTP 404")


def test_an_untrusted_policy_certificate_fails(
    sender: Sender, sts: tuple[HttpsServer, str]
) -> None:
    sts[0].policy(DOMAIN, GOOD)
    sender.zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=2026")
    result = check_mta_sts(sender.lookup(), DOMAIN, port=sts[0].port)  # no ca_file
    assert_result(result, "fail", "certificate")


def test_tls_rpt_record(sender: Sender) -> None:
    assert_result(check_tls_rpt(sender.lookup(), DOMAIN), "pass", "no TLS-RPT", remedy="rua=")
    sender.zone.add(f"_smtp._tls.{DOMAIN}", "TXT", "v=TLSRPTv1; rua=mailto:tls@sender.test")
    assert_result(check_tls_rpt(sender.lookup(), DOMAIN), "pass", "mailto:tls@sender.test")
    sender.zone.remove(f"_smtp._tls.{DOMAIN}")
    sender.zone.add(f"_smtp._tls.{DOMAIN}", "TXT", "v=TLSRPTv1; rua=tls@sender.test")
    assert_result(check_tls_rpt(sender.lookup(), DOMAIN), "fail", "no usable rua")


def test_check_command_lists_mta_sts_and_tls_rpt(
    sender: Sender, sts: tuple[HttpsServer, str]
) -> None:
    sts[0].policy(DOMAIN, GOOD)
    sender.zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=7")
    result = sender.cli("check", "--json", sender={"ca_file": sts[1], "mta_sts_port": sts[0].port})
    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows[f"mta-sts {DOMAIN}"]["status"] == "pass"
    assert "id 7, mode enforce" in rows[f"mta-sts {DOMAIN}"]["detail"]
    assert rows[f"tls-rpt {DOMAIN}"]["status"] == "pass"
    assert result.exit_code == 0, result.output


def test_check_with_dane_on_fails_when_the_resolver_does_not_validate(sender: Sender) -> None:
    result = sender.cli("check", "--json", sender={"dane": "on"})
    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows["dane resolver"]["status"] in ("fail", "inconclusive")
    assert "validating resolver" in rows["dane resolver"]["remedy"]
    assert "dane resolver" not in {
        row["check"] for row in json.loads(sender.cli("check", "--json").output)
    }
