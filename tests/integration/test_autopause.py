"""Auto-pause against a real host that refuses connections, through the CLI: the count of
consecutive connection, TLS and policy failures lives in the database, so it survives engine
passes and is shared by a fleet; a success resets it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bulkmail.cli.main import cli
from tests.integration.world import World


def run(world: World, *args: str) -> str:
    out = CliRunner().invoke(cli, ["--config", str(world.config_path()), *args])
    assert out.exit_code == 0, out.output
    return out.output


def test_a_host_refusing_connections_pauses_the_campaign_with_a_reason(world: World) -> None:
    world.configure("schedule", pause_after_failures=5)
    world.configure("retry", intervals=["1s"], max_age="20s")
    world.configure("limits.default", connections=2)  # two lanes: two refusals per pass
    world.mx("a.test", (10, "127.0.0.9"), serve=False)  # nothing listens there: refused
    world.subscribers([f"u{i}@a.test" for i in range(20)])
    cid = world.campaign()
    sent = json.loads(run(world, "campaigns", "send", str(cid), "--wait", "--json"))
    assert sent["state"] == "paused", sent
    assert sent["expired"] == 0
    show = run(world, "campaigns", "show", str(cid))
    assert "consecutive" in show and "connection" in show
    status = run(world, "campaigns", "status", str(cid))
    assert "paused" in status and "consecutive" in status
    status_json = json.loads(run(world, "campaigns", "status", str(cid), "--json"))
    assert "consecutive" in status_json["reason"]
    streak = world.sql("SELECT failure_streak FROM campaigns WHERE id = :c", c=cid)[0][0]
    assert streak >= 5
