"""Soft bounces that add up (issue 13 §5): a mailbox full or inactive on N deliveries within D
days is suppressed with that reason; a policy or spam block never counts. The deliveries are
really sent (world), the receivers' DSNs for those very messages are imported."""

from __future__ import annotations

from pathlib import Path

from bulkmail.bounces.process import import_files
from bulkmail.peers.smtp import Received
from tests.integration.test_bounces import dsn
from tests.integration.world import World

FULL, LISTED, FINE = "full@a.test", "listed@a.test", "fine@a.test"


def three_campaigns(w: World) -> list[dict[str, Received]]:
    """Three campaigns to the same people; per campaign, what each received."""
    w.mx("a.test", (10, "127.0.0.2"))
    w.subscribers([FULL, LISTED, FINE])
    sent = []
    seen = 0
    for _ in range(3):
        w.send(w.campaign())
        got = w.received()
        sent.append({m.rcpt_tos[0]: m for m in got[seen:]})
        seen = len(got)
    return sent


def suppressed(w: World) -> dict[str, str]:
    return {e: r for e, r in w.sql("SELECT email, reason FROM suppressions")}


def report(w: World, tmp: Path, name: str, data: bytes) -> None:
    path = tmp / f"{name}.eml"
    path.write_bytes(data)
    import_files(w.settings(), w.db(), [path])


def test_a_full_mailbox_on_three_deliveries_is_suppressed_a_blocklist_never(
    world: World, tmp_path: Path
) -> None:
    campaigns = three_campaigns(world)
    for n, got in enumerate(campaigns):
        report(world, tmp_path, f"full{n}", dsn(got[FULL], "5.2.2", "552 5.2.2 Mailbox full"))
        report(
            world,
            tmp_path,
            f"listed{n}",
            dsn(got[LISTED], "5.7.1", "554 5.7.1 blocked using zen.spamhaus.org"),
        )
        if n < 2:
            assert suppressed(world) == {}, n  # one or two full-mailbox failures: not yet
    reasons = suppressed(world)
    assert list(reasons) == [FULL]
    assert reasons[FULL].startswith("soft bounces: 3 deliveries in 14 days")
    assert "5.2.2" in reasons[FULL]


def test_the_limit_is_configurable_and_the_same_delivery_counts_once(
    world: World, tmp_path: Path
) -> None:
    world.configure("bounces", soft_bounce_limit=2, soft_bounce_days=14)
    first, second, _third = three_campaigns(world)
    inactive = "550 5.2.1 The email account that you tried to reach is inactive"
    report(world, tmp_path, "a", dsn(first[FULL], "5.2.1", inactive))
    report(world, tmp_path, "b", dsn(first[FULL], "4.2.2", "452 4.2.2 Over quota"))  # same one
    assert suppressed(world) == {}
    report(world, tmp_path, "c", dsn(second[FULL], "5.2.2", "552 5.2.2 Mailbox full"))
    assert list(suppressed(world)) == [FULL]


def test_outside_the_window_failures_do_not_count(world: World, tmp_path: Path) -> None:
    world.configure("bounces", soft_bounce_days=1)
    campaigns = three_campaigns(world)
    for n, got in enumerate(campaigns):
        report(world, tmp_path, f"f{n}", dsn(got[FULL], "5.2.2", "552 5.2.2 Mailbox full"))
        if n < 2:  # the earlier failures are made old
            world.sql("UPDATE events SET created_at = created_at - 2 * 86400")
    assert suppressed(world) == {}
