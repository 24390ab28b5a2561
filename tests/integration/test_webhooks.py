"""Events out: every state change reaches a real HTTP receiver on loopback, signed, even one
that is down for a while or fails at first; and without [webhooks] nothing is owed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from bulkmail.audience.unsubscribe import unsubscribe
from bulkmail.cli.main import cli
from bulkmail.db import control
from bulkmail.db.engine import Database
from bulkmail.peers.smtp import Script
from bulkmail.webhooks import outbox
from bulkmail.webhooks.outbox import enable
from bulkmail.webhooks.sender import SenderOptions, WebhookSender
from tests.integration.test_bounces import arf, dsn, unsubscribe_request
from tests.integration.world import World
from tests.peers.webhooks import Receiver

HOOK_SECRET = "hook-secret-0123456789abcdef"


def bulkmail(world: World, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(world.config_path()), *args], catch_exceptions=False
    )


def send(world: World) -> int:
    """A campaign to 3 good addresses, one that bounces and one greylisted (deferred, then
    sent), sent to the end through the CLI."""
    world.mx(
        "a.test",
        (10, "127.0.0.2"),
        script=Script(rcpt_replies={"gone@a.test": "550 5.1.1 No such user"}),
    )
    world.mx("grey.test", (10, "127.0.0.3"), script=Script(greylist=True))
    world.subscribers(["ann@a.test", "bob@a.test", "cat@a.test", "gone@a.test", "dan@grey.test"])
    cid = world.campaign()
    result = bulkmail(world, "campaigns", "send", str(cid), "--wait")
    assert result.exit_code == 0, result.output
    return cid


def expected(world: World, cid: int) -> Counter[tuple[str, int | None]]:
    """(type, delivery id) of every event the log holds for the campaign, plus its states."""
    rows = world.sql("SELECT kind, delivery_id FROM events WHERE campaign_id = :c", c=cid)
    out = Counter(
        ("subscriber.unsubscribed" if k == "unsubscribed" else f"delivery.{k}", d) for k, d in rows
    )
    out.update({("campaign.running", None): 1, ("campaign.finished", None): 1})
    return out


def received(receiver: Receiver) -> Counter[tuple[str, int | None]]:
    return Counter((e["type"], e["data"].get("delivery_id")) for e in receiver.events)


def test_without_webhooks_a_send_owes_nothing_and_its_sent_events_are_exported(
    world: World,
) -> None:
    cid = send(world)
    assert world.sql("SELECT COUNT(*) FROM outbox")[0][0] == 0
    exported = bulkmail(world, "events", "export", "--campaign", str(cid), "--format", "jsonl")
    kinds = Counter(json.loads(line)["kind"] for line in exported.output.splitlines())
    assert kinds == {"sent": 4, "bounced": 1, "deferred": 1}
    sent = {json.loads(x)["email"] for x in exported.output.splitlines() if '"sent"' in x}
    assert sent == {"ann@a.test", "bob@a.test", "cat@a.test", "dan@grey.test"}


def test_a_receiver_down_for_a_while_gets_every_event_once_it_is_back(
    world: World, tmp_path: Path
) -> None:
    receiver = Receiver(HOOK_SECRET.encode())  # its port is reserved; nothing listens yet
    world.configure("webhooks", urls=[receiver.url], retry_initial=0.2, retry_max=0.5)
    cid = send(world)
    owed = world.sql("SELECT COUNT(*) FROM outbox")[0][0]
    assert owed == sum(expected(world, cid).values()) == 8
    status = json.loads(bulkmail(world, "webhooks", "status", "--json").output)
    assert status["pending"] == 8 and status["lag_seconds"] > 0
    env = {**os.environ, "BULKMAIL_WEBHOOK_SECRET": HOOK_SECRET}
    log = tmp_path / "webhooks.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkmail", "--config", str(world.config_path()), "webhooks", "run"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not world.sql("SELECT COUNT(*) FROM outbox WHERE attempts >= 2")[0][0]:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.1)  # tried, refused, and tried again: the receiver is still down
        receiver.start()
        while len(receiver.events) < owed:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.stop()
    assert received(receiver) == expected(world, cid)
    assert len(receiver.ids()) == owed and receiver.rejected == 0
    assert world.sql("SELECT COUNT(*) FROM outbox")[0][0] == 0
    assert "next try in" in log.read_text()
    sent = [e for e in receiver.events if e["type"] == "delivery.sent"]
    assert {e["data"]["email"] for e in sent} == {
        "ann@a.test",
        "bob@a.test",
        "cat@a.test",
        "dan@grey.test",
    }
    bounced = next(e for e in receiver.events if e["type"] == "delivery.bounced")
    assert (bounced["data"]["code"], bounced["data"]["enhanced"]) == (550, "5.1.1")


def _sender(db: Database, secret: str) -> WebhookSender:
    return WebhookSender(
        db, SenderOptions(secret=secret.encode(), retry_initial=0.1, retry_max=0.3, timeout=5)
    )


def _drain(sender: WebhookSender, world: World, until: float = 10.0) -> None:
    """Run the sender's passes until the outbox is empty (retries come due in ~0.1 s)."""
    deadline = time.monotonic() + until
    while True:
        asyncio.run(sender.run(once=True))
        if not world.sql("SELECT COUNT(*) FROM outbox")[0][0] or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _changes(db_url: str, settings_world: World, n: int) -> tuple[Database, list[str]]:
    """``n`` campaign state changes and one unsubscribe, written with webhooks on."""
    settings_world.subscribers(["ann@a.test"])
    cid = settings_world.campaign()
    db = enable(Database(db_url), settings_world.settings())
    for i in range(n):
        assert control.transition(db, cid, "paused" if i % 2 else "running", time.time())
    sid = settings_world.sql("SELECT id FROM subscribers")[0][0]
    assert unsubscribe(db, cid, sid, "test")
    return db, [r[0] for r in settings_world.sql("SELECT event_id FROM outbox ORDER BY id")]


def test_a_receiver_answering_500_gets_the_same_event_again_until_it_answers_2xx(
    world: World, db_url: str
) -> None:
    receiver = Receiver(HOOK_SECRET.encode(), fail_first=3).start()
    try:
        world.configure("webhooks", urls=[receiver.url])
        db, ids = _changes(db_url, world, 5)
        assert len(ids) == 6
        sender = _sender(db, HOOK_SECRET)
        _drain(sender, world)
    finally:
        receiver.stop()
    assert sorted(receiver.ids()) == sorted(ids)
    assert receiver.posts == 6 + 3 and len(receiver.events) == 6
    assert sender.stats.errors == {"HTTP 500": 3}
    assert world.sql("SELECT COUNT(*) FROM outbox")[0][0] == 0
    unsub = next(e for e in receiver.events if e["type"] == "subscriber.unsubscribed")
    assert unsub["data"]["email"] == "ann@a.test" and unsub["data"]["list"] == "news"


def test_a_receiver_refuses_a_wrong_signature_and_the_event_stays_owed(
    world: World, db_url: str
) -> None:
    receiver = Receiver(HOOK_SECRET.encode()).start()
    try:
        world.configure("webhooks", urls=[receiver.url])
        db, ids = _changes(db_url, world, 1)
        sender = _sender(db, "not-the-receiver-s-secret-000")
        asyncio.run(sender.run(once=True))
    finally:
        receiver.stop()
    assert receiver.rejected == 2 and receiver.events == []
    rows = world.sql("SELECT event_id, attempts, last_error FROM outbox ORDER BY id")
    assert [(r[0], r[1], r[2]) for r in rows] == [(i, 1, "HTTP 400") for i in ids]


def test_two_endpoints_each_get_every_event_with_the_same_id(world: World, db_url: str) -> None:
    first, second = Receiver(HOOK_SECRET.encode()).start(), Receiver(HOOK_SECRET.encode()).start()
    try:
        world.configure("webhooks", urls=[first.url, second.url], events=["campaign.*"])
        db, ids = _changes(db_url, world, 2)  # the unsubscribe is not asked for
        assert len(ids) == 4
        asyncio.run(_sender(db, HOOK_SECRET).run(once=True))
    finally:
        first.stop()
        second.stop()
    assert first.ids() == second.ids() == set(ids) and len(first.ids()) == 2
    assert {e["type"] for e in first.events} == {"campaign.running", "campaign.paused"}


def test_webhooks_run_without_urls_or_secret_is_one_line(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    result = bulkmail(world, "webhooks", "run", "--once")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"bulkmail: error: {world.config_path()}: webhooks.urls: no endpoint configured "
        "([webhooks] urls)"
    ]
    world.configure("webhooks", urls=["http://127.0.0.1:9/x"])
    monkeypatch.delenv("BULKMAIL_WEBHOOK_SECRET", raising=False)
    result = bulkmail(world, "webhooks", "run", "--once")
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "BULKMAIL_WEBHOOK_SECRET is not set" in err


@pytest.mark.parametrize("bad", ["ftp://x/y", "hooks.example/x"])
def test_a_webhook_url_that_is_not_http_is_refused_at_load(world: World, bad: str) -> None:
    world.configure("webhooks", urls=[bad])
    result = bulkmail(world, "webhooks", "status")
    assert result.exit_code == 2
    assert "webhooks.urls[0]: not an http(s) URL" in result.stderr


def test_bounce_processing_sends_bounces_complaints_and_mailto_unsubscribes_once(
    world: World, tmp_path: Path
) -> None:
    world.configure("webhooks", urls=["http://127.0.0.1:9/unused"])
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["gone@a.test", "angry@a.test", "leave@a.test"])
    cid = world.campaign()
    assert bulkmail(world, "campaigns", "send", str(cid), "--wait").exit_code == 0
    got = {m.rcpt_tos[0]: m for m in world.received()}
    files = []
    for name, data in (
        ("gone.eml", dsn(got["gone@a.test"], "5.1.1", "550 5.1.1 User unknown")),
        ("angry.eml", arf(got["angry@a.test"])),
        ("leave.eml", unsubscribe_request(got["leave@a.test"])),
    ):
        (tmp_path / name).write_bytes(data)
        files.append(str(tmp_path / name))
    before = world.sql("SELECT COUNT(*) FROM outbox")[0][0]
    for _ in range(2):  # the second import records nothing, and owes nothing more
        assert bulkmail(world, "bounces", "import", *files).exit_code == 0
    rows = world.sql("SELECT kind, payload FROM outbox ORDER BY id")[before:]
    assert sorted((k, json.loads(p)["data"]["email"]) for k, p in rows) == [
        ("delivery.bounced", "gone@a.test"),
        ("delivery.complained", "angry@a.test"),
        ("subscriber.unsubscribed", "leave@a.test"),
    ]


def test_an_outbox_row_is_rolled_back_with_the_change_it_reports(world: World, db_url: str) -> None:
    world.configure("webhooks", urls=["http://127.0.0.1:9/unused"])
    world.subscribers(["ann@a.test"])
    cid = world.campaign()
    db = enable(Database(db_url), world.settings())
    with pytest.raises(RuntimeError), db.session() as s:
        s.execute(text("UPDATE campaigns SET state = 'paused' WHERE id = :c"), {"c": cid})
        assert outbox.add(s, "campaign.paused", [{"campaign_id": cid}], time.time()) == 1
        raise RuntimeError("the change fails after its event was written")
    assert world.sql("SELECT COUNT(*) FROM outbox")[0][0] == 0
    assert world.sql("SELECT state FROM campaigns")[0][0] == "draft"
    db.dispose()


def test_the_running_sender_survives_a_database_error_and_goes_on(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bulkmail.errors import DatabaseError

    receiver = Receiver(HOOK_SECRET.encode()).start()
    world.configure("webhooks", urls=[receiver.url])
    db, ids = _changes(db_url, world, 1)
    real, calls = outbox.claim, []

    def flaky(*args: object, **kwargs: object) -> list[outbox.Owed]:
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseError("database x is unreachable: connection refused")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "claim", flaky)
    sender = WebhookSender(db, SenderOptions(secret=HOOK_SECRET.encode(), poll=0.05))

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        deadline = time.monotonic() + 10
        while len(receiver.events) < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    try:
        asyncio.run(run())
    finally:
        receiver.stop()
    assert len(calls) >= 2 and sorted(receiver.ids()) == sorted(ids)


def test_a_hanging_receiver_costs_one_round_of_timeouts_not_one_per_event(
    world: World, db_url: str
) -> None:
    receiver = Receiver(HOOK_SECRET.encode(), delay=3.0).start()
    try:
        world.configure("webhooks", urls=[receiver.url])
        db, ids = _changes(db_url, world, 19)  # 20 events
        options = SenderOptions(secret=HOOK_SECRET.encode(), timeout=0.3, concurrency=2)
        sender = WebhookSender(db, options)
        started = time.monotonic()
        asyncio.run(sender.run(once=True))
        took = time.monotonic() - started
    finally:
        receiver.stop()
    assert took < 2.0  # 20 events one after the other would take 20 x 0.3 / 2 = 3 s
    assert sender.stats.errors == {"timed out": 2}
    rows = world.sql("SELECT attempts, COUNT(*) FROM outbox GROUP BY attempts ORDER BY attempts")
    assert [tuple(r) for r in rows] == [(0, 18), (1, 2)]  # nothing lost, 18 not even counted


def test_a_send_by_two_worker_processes_owes_every_event_too(world: World) -> None:
    world.configure("webhooks", urls=["http://127.0.0.1:9/unused"])
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers([f"p{i}@a.test" for i in range(40)])
    cid = world.campaign()
    result = bulkmail(world, "campaigns", "send", str(cid), "--wait", "--workers", "2")
    assert result.exit_code == 0, result.output
    kinds = Counter(r[0] for r in world.sql("SELECT kind FROM outbox"))
    assert kinds == {"delivery.sent": 40, "campaign.running": 1, "campaign.finished": 1}


def test_events_per_post_sends_signed_json_arrays(world: World, db_url: str) -> None:
    from bulkmail.webhooks.sender import options_from

    receiver = Receiver(HOOK_SECRET.encode()).start()
    try:
        world.configure("webhooks", urls=[receiver.url], events_per_post=20)
        db, ids = _changes(db_url, world, 49)  # 50 events
        options = options_from(world.settings(), HOOK_SECRET.encode())
        asyncio.run(WebhookSender(db, options).run(once=True))
    finally:
        receiver.stop()
    assert receiver.posts == 3 and receiver.rejected == 0  # 20 + 20 + 10, each verified
    assert sorted(receiver.ids()) == sorted(ids) and len(receiver.events) == 50
    assert world.sql("SELECT COUNT(*) FROM outbox")[0][0] == 0
