"""Relay errors that say what to do: a smart host whose certificate does not verify, or a
password variable that is not set, stops ``campaigns send`` at once with one line naming the
host and the setting to fix; nobody is deferred, bounced or left in ``sending``.

Real peers: an aiosmtpd smart host with STARTTLS (a trustme certificate) and AUTH.
"""

from __future__ import annotations

import time

import pytest
import trustme
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from tests.integration.world import World

PASSWORD = "correct horse"


def send(world: World, cid: int) -> Result:
    return CliRunner().invoke(
        cli,
        ["--config", str(world.config_path()), "campaigns", "send", str(cid), "--json"],
        catch_exceptions=False,
    )


def one_line(result: Result) -> str:
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in result.output, err
    assert err.startswith("bulkmail: error: relay 127.0.0.9:"), err
    return err


@pytest.fixture
def relay_world(world: World, tls_server_context, monkeypatch: pytest.MonkeyPatch) -> World:  # type: ignore[no-untyped-def]
    world.server("127.0.0.9", auth={"news": PASSWORD}, starttls_context=tls_server_context())
    monkeypatch.setenv("BULKMAIL_RELAY_PASSWORD", PASSWORD)
    world.configure("sender", mode="relay")
    world.configure("relay", host="127.0.0.9", port=world.port, username="news")
    world.subscribers([f"u{i}@far.test" for i in range(20)])
    return world


def assert_nobody_touched(world: World, cid: int) -> None:
    assert world.servers["127.0.0.9"].messages == []
    states = {d.state for d in world.states(cid).values()}
    assert states == {"queued"}, states  # not deferred until expiry, not stuck in sending


def test_untrusted_relay_certificate_stops_the_send_naming_relay_ca_file(
    relay_world: World,
) -> None:
    cid = relay_world.campaign()
    started = time.monotonic()

    err = one_line(send(relay_world, cid))

    assert time.monotonic() - started < 15
    assert "certificate not trusted" in err and "relay.ca_file" in err
    assert_nobody_touched(relay_world, cid)


def test_relay_with_the_ca_file_sends(relay_world: World, tls_ca: trustme.CA) -> None:
    ca = relay_world.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    relay_world.configure("relay", ca_file=str(ca))
    cid = relay_world.campaign()

    result = send(relay_world, cid)

    assert result.exit_code == 0, result.output
    assert len(relay_world.servers["127.0.0.9"].messages) == 20


def test_unset_password_variable_is_named_not_called_rejected(
    relay_world: World, tls_ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = relay_world.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    relay_world.configure("relay", ca_file=str(ca))
    monkeypatch.delenv("BULKMAIL_RELAY_PASSWORD")
    cid = relay_world.campaign()

    err = one_line(send(relay_world, cid))

    assert "BULKMAIL_RELAY_PASSWORD is not set" in err and "rejected" not in err
    assert_nobody_touched(relay_world, cid)


def test_unset_password_variable_uses_the_name_from_password_env(
    relay_world: World, tls_ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = relay_world.root / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    relay_world.configure("relay", ca_file=str(ca), password_env="SMARTHOST_PW")
    monkeypatch.delenv("SMARTHOST_PW", raising=False)
    cid = relay_world.campaign()

    err = one_line(send(relay_world, cid))

    assert "SMARTHOST_PW is not set" in err
