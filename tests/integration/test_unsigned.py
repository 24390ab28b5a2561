"""Never unsigned by surprise: with no DKIM key configured, the commands that send refuse
(one line naming ``bulkmail dkim keygen``, exit 2, nothing enqueued) unless the config says
``[dkim] required = false`` or ``campaigns send`` is given ``--unsigned``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from bulkmail.cli.main import cli
from tests.integration.world import World


def bulkmail(world: World, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(world.config_path()), *args], catch_exceptions=False
    )


def assert_refused_unsigned(result: Result, world: World) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in result.output, err
    assert err.startswith(f"bulkmail: error: {world.config_path()}: [dkim]:"), err
    assert "unsigned" in err and "bulkmail dkim keygen" in err and "required = false" in err


@pytest.fixture
def unsigned_world(world: World) -> World:
    world.configure("dkim", key_file="")
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["u1@a.test", "u2@a.test"])
    return world


def test_send_without_a_dkim_key_is_refused_and_nothing_is_enqueued(
    unsigned_world: World,
) -> None:
    cid = unsigned_world.campaign()

    result = bulkmail(unsigned_world, "campaigns", "send", str(cid))

    assert_refused_unsigned(result, unsigned_world)
    assert unsigned_world.states(cid) == {}
    assert unsigned_world.received() == []
    assert unsigned_world.sql("SELECT state FROM campaigns WHERE id = :i", i=cid)[0][0] == "draft"


@pytest.mark.parametrize("command", [["run-due"], ["worker", "--max-idle-sleep", "0.1"]])
def test_run_due_and_worker_without_a_dkim_key_are_refused(
    unsigned_world: World, command: list[str]
) -> None:
    assert_refused_unsigned(bulkmail(unsigned_world, *command), unsigned_world)


def test_unsigned_flag_sends_unsigned(unsigned_world: World) -> None:
    cid = unsigned_world.campaign()

    result = bulkmail(unsigned_world, "campaigns", "send", str(cid), "--unsigned", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sent"] == 2
    assert all(b"DKIM-Signature" not in m.data for m in unsigned_world.received())


def test_required_false_in_the_config_sends_unsigned(unsigned_world: World) -> None:
    unsigned_world.configure("dkim", required=False)
    cid = unsigned_world.campaign()

    result = bulkmail(unsigned_world, "campaigns", "send", str(cid), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sent"] == 2


def test_a_configured_key_needs_no_flag(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["u1@a.test"])
    cid = world.campaign()

    result = bulkmail(world, "campaigns", "send", str(cid), "--json")

    assert result.exit_code == 0, result.output
    assert [b"DKIM-Signature" in m.data for m in world.received()] == [True]
