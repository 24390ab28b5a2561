"""A bounce report's diagnostic repeats its codes (``smtp; 550 5.1.1 User unknown``): the
campaign report prints each code once, not ``550 5.1.1 550 5.1.1 User unknown``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bulkmail.bounces.process import import_files
from bulkmail.cli.main import cli
from tests.integration.test_bounces import dsn, send
from tests.integration.world import World


def test_a_dsn_bounce_prints_its_codes_once_in_the_report(world: World, tmp_path: Path) -> None:
    cid, got = send(world, ["gone@a.test", "fine@a.test"])
    report = tmp_path / "gone.eml"
    report.write_bytes(dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 User unknown"))
    import_files(world.settings(), world.db(), [report])
    assert world.states(cid)["gone@a.test"].state == "bounced"

    result = CliRunner().invoke(
        cli, ["--config", str(world.config_path()), "campaigns", "report", str(cid)]
    )
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "User unknown" in flat, result.output
    assert "550 5.1.1 550" not in flat and "5.1.1 5.1.1" not in flat, result.output
