"""A member whose message cannot be rendered fails alone: the send goes on for everyone else."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.campaigns import resume
from bulkmail.compose import mime
from tests.integration.world import World


def add_members(world: World, name: str, csv: str) -> None:
    path = world.root / name
    path.write_text(csv, encoding="utf-8")
    db = world.db()
    try:
        result = import_csv(db, world.list_name, path)
    finally:
        db.dispose()
    assert not result.rejected, result.rejected


def test_a_member_whose_render_fails_is_failed_with_the_reason_and_the_rest_are_sent(
    world: World, tmp_path: Path
) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    db = world.db()
    create_list(db, world.list_name)
    db.dispose()
    add_members(
        world,
        "first.csv",
        "email,name,city\nann@a.test,Ann,Oslo\nbob@a.test,Bob,Rome\ncy@a.test,Cy,Lima\n",
    )
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "body.txt").write_text(
        "Hi {{ subscriber.name }},\nsee you in {{ subscriber.attributes.city }}.\n"
    )
    cid = world.campaign(template=str(folder))  # every member has a city: accepted
    add_members(world, "later.csv", "email,name\nlate@a.test,Late\n")  # joins without one

    report = world.send(cid)

    assert report.state == "finished"
    assert report.counts["sent"] == 3 and report.counts["failed"] == 1
    assert world.recipients_received() == ["ann@a.test", "bob@a.test", "cy@a.test"]
    late = world.states(cid)["late@a.test"]
    assert late.state == "failed"
    assert late.last_text == (
        f"template {folder}/body.txt line 2: 'subscriber.attributes' has no attribute 'city'"
    )


def test_an_unexpected_compose_error_fails_that_member_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["ann@a.test", "odd@a.test", "cy@a.test"])
    cid = world.campaign()
    real = mime.format_address

    def breaks_on_odd(name: str, address: str, first_used: int) -> list[str]:
        if address == "odd@a.test":
            raise ValueError("a bug only this member's data meets")
        return real(name, address, first_used)

    monkeypatch.setattr(mime, "format_address", breaks_on_odd)
    report = world.send(cid)
    assert report.state == "finished"
    assert world.recipients_received() == ["ann@a.test", "cy@a.test"]
    odd = world.states(cid)["odd@a.test"]
    assert (odd.state, odd.last_text) == (
        "failed",
        "cannot compose: ValueError: a bug only this member's data meets",
    )


def test_a_template_gone_at_send_pauses_the_campaign_and_fails_no_one(
    world: World, tmp_path: Path
) -> None:
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["ann@a.test", "bob@a.test"])
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "body.txt").write_text("Hi {{ subscriber.name }}\n")
    cid = world.campaign(template=str(folder))
    folder.rename(tmp_path / "moved")  # e.g. a worker host without the folder

    report = world.send(cid)

    assert report.state == "paused"
    assert report.counts["failed"] == 0 and world.received() == []
    [(reason,)] = world.sql("SELECT state_reason FROM campaigns WHERE id = :c", c=cid)
    assert reason.startswith(f"template {str(folder)!r} not found")
    assert reason.endswith(f"fix it, then: bulkmail campaigns resume {cid}")

    (tmp_path / "moved").rename(folder)
    db = world.db()
    resume(db, cid)
    db.dispose()
    assert world.send(cid).counts["sent"] == 2
    assert world.recipients_received() == ["ann@a.test", "bob@a.test"]
