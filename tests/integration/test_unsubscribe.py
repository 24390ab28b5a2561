"""Unsubscribing for real: the library on both databases, and HTTP requests against a running
``bulkmail serve`` (a subprocess), down to the next campaign skipping the address."""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bulkmail.audience.importer import import_csv
from bulkmail.audience.lists import create_list
from bulkmail.audience.unsubscribe import find_target, unsubscribe, unsubscribe_token
from bulkmail.campaigns import create_campaign
from bulkmail.compose.tokens import make_token
from bulkmail.config import parse_settings
from bulkmail.db.engine import Database
from bulkmail.db.queries import enqueue
from bulkmail.peers.smtp import free_port
from tests.integration.world import SECRET as WORLD_SECRET
from tests.integration.world import World

SECRET = b"integration-secret-0123456789"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class Audience:
    list_id: int
    campaign_id: int
    ids: dict[str, int]  # email -> subscriber id


def make_audience(
    db: Database,
    tmp_path: Path,
    emails: list[str],
    list_name: str = "news",
) -> Audience:
    lst = create_list(db, list_name)
    path = tmp_path / f"{list_name}.csv"
    path.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    assert not import_csv(db, list_name, path).rejected
    return Audience(lst.id, new_campaign(db, list_name), subscriber_ids(db))


def new_campaign(db: Database, list_name: str = "news") -> int:
    return create_campaign(
        db,
        parse_settings({}, "test"),
        name="c",
        list_name=list_name,
        subject="Hi",
        from_header="News <news@example.com>",
        template="newsletter",
    ).id


def subscriber_ids(db: Database) -> dict[str, int]:
    return dict(sql(db, "SELECT email, id FROM subscribers"))


def sql(db: Database, query: str, **params: object) -> list:  # type: ignore[type-arg]
    with db.session() as s:
        return list(s.execute(text(query), params).all())


def status(db: Database, list_id: int, subscriber_id: int) -> str:
    return sql(
        db,
        "SELECT status FROM memberships WHERE list_id = :l AND subscriber_id = :s",
        l=list_id,
        s=subscriber_id,
    )[0][0]


def events(db: Database) -> list:  # type: ignore[type-arg]
    return sql(
        db,
        "SELECT kind, campaign_id, subscriber_id, email, source, dedupe_key "
        "FROM events ORDER BY id",
    )


def enqueued(db: Database, list_id: int, list_name: str = "news") -> list[str]:
    cid = new_campaign(db, list_name)
    enqueue(db, cid, list_id, time.time())
    return sorted(
        r[0] for r in sql(db, "SELECT email FROM deliveries WHERE campaign_id = :c", c=cid)
    )


# -- the library, on SQLite and PostgreSQL ----------------------------------------------------


def test_unsubscribe_marks_the_membership_and_writes_one_event(
    db: Database, tmp_path: Path
) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com", "bob@example.com"])
    ann = a.ids["ann@example.com"]
    assert unsubscribe(db, a.campaign_id, ann, "mailto", now=1000.0, dedupe_key="m1") is True
    assert status(db, a.list_id, ann) == "unsubscribed"
    assert sql(db, "SELECT updated_at FROM memberships WHERE subscriber_id = :s", s=ann) == [
        (1000.0,)
    ]
    assert events(db) == [("unsubscribed", a.campaign_id, ann, "ann@example.com", "mailto", "m1")]
    assert status(db, a.list_id, a.ids["bob@example.com"]) == "subscribed"


def test_a_repeat_changes_nothing_and_adds_no_event(db: Database, tmp_path: Path) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com"])
    ann = a.ids["ann@example.com"]
    assert unsubscribe(db, a.campaign_id, ann, "one-click") is True
    assert unsubscribe(db, a.campaign_id, ann, "one-click") is False
    assert unsubscribe(db, a.campaign_id, ann, "mailto", dedupe_key="k") is False
    assert len(events(db)) == 1


def test_a_repeated_dedupe_key_neither_fails_nor_adds_an_event(
    db: Database, tmp_path: Path
) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com"])
    ann = a.ids["ann@example.com"]
    assert unsubscribe(db, a.campaign_id, ann, "mailto", dedupe_key="<msg@x>") is True
    with db.session() as s:  # subscribed again (say, by the operator), then the same
        s.execute(text("UPDATE memberships SET status = 'subscribed'"))  # mail re-read
    assert unsubscribe(db, a.campaign_id, ann, "mailto", dedupe_key="<msg@x>") is True
    assert status(db, a.list_id, ann) == "unsubscribed"
    assert len(events(db)) == 1


def test_an_unknown_campaign_subscriber_or_membership_changes_nothing(
    db: Database, tmp_path: Path
) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com"])
    make_audience(db, tmp_path, ["zed@example.com"], list_name="other")
    ann, zed = a.ids["ann@example.com"], subscriber_ids(db)["zed@example.com"]
    assert unsubscribe(db, a.campaign_id + 100, ann, "mailto") is False
    assert unsubscribe(db, a.campaign_id, ann + 100, "mailto") is False
    assert unsubscribe(db, a.campaign_id, zed, "mailto") is False  # not on this list
    assert events(db) == []
    assert status(db, a.list_id, ann) == "subscribed"


def test_unsubscribing_leaves_the_member_s_other_lists_alone(db: Database, tmp_path: Path) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com"])
    b = make_audience(db, tmp_path, ["ann@example.com"], list_name="other")
    ann = a.ids["ann@example.com"]
    unsubscribe(db, b.campaign_id, ann, "one-click")
    assert (status(db, a.list_id, ann), status(db, b.list_id, ann)) == (
        "subscribed",
        "unsubscribed",
    )
    assert enqueued(db, a.list_id) == ["ann@example.com"]


def test_unsubscribe_token_refuses_forged_tokens(db: Database, tmp_path: Path) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com"])
    ann = a.ids["ann@example.com"]
    good = make_token(SECRET, a.campaign_id, ann)
    for bad in (
        good[:-2],
        make_token(b"not-our-secret-0123456789", a.campaign_id, ann),
        make_token(SECRET, a.campaign_id + 9, ann),
        "",
    ):
        assert unsubscribe_token(db, SECRET, bad, "one-click") is None
    assert status(db, a.list_id, ann) == "subscribed"
    outcome = unsubscribe_token(db, SECRET, good.upper(), "one-click")
    assert outcome is not None and outcome.changed
    assert (outcome.target.email, outcome.target.list_name) == ("ann@example.com", "news")
    assert find_target(db, a.campaign_id, ann).subscribed is False  # type: ignore[union-attr]


def test_simultaneous_requests_change_the_membership_once(db: Database, tmp_path: Path) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com"])
    ann = a.ids["ann@example.com"]
    start = threading.Barrier(4)
    results: list[bool] = []

    def click() -> None:
        start.wait()
        results.append(unsubscribe(db, a.campaign_id, ann, "one-click"))

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(events(db)) == 1


# -- real HTTP against `bulkmail serve` -----------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``serve(db_url, secret, path="/u")`` starts ``bulkmail serve`` on a free port and
    returns its base URL (``http://127.0.0.1:PORT/u``) once it answers."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        db_url: str,
        secret: str,
        path: str = "/u",
        port: int | None = None,
        config: Path | None = None,
    ) -> str:
        port = port or free_port()
        if config is None:
            config = tmp_path / "serve.toml"
            config.write_text(
                f'[database]\nurl = "{db_url}"\n[unsubscribe]\n'
                f'url = "https://news.example{path}"\n',
                encoding="utf-8",
            )
        env = {**os.environ, "BULKMAIL_SECRET": secret}
        env.pop("BULKMAIL_DATABASE_URL", None)
        log = (tmp_path / f"serve-{port}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bulkmail",
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}{path}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
            try:
                httpx.get(f"{base}/probe", timeout=1)
                return base
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail("bulkmail serve did not answer within 30 s")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_one_click_over_http_unsubscribes_get_does_not_and_forgeries_are_refused(
    db: Database, db_url: str, tmp_path: Path, serve: Callable[..., str]
) -> None:
    a = make_audience(db, tmp_path, ["ann@example.com", "bob@example.com"])
    ann = a.ids["ann@example.com"]
    token = make_token(SECRET, a.campaign_id, ann)
    base = serve(db_url, SECRET.decode())
    with httpx.Client(timeout=10) as http:
        page = http.get(f"{base}/{token}")
        assert page.status_code == 200 and "<form" in page.text
        assert status(db, a.list_id, ann) == "subscribed"

        forged = make_token(b"not-our-secret-0123456789", a.campaign_id, ann)
        for bad in (forged, token[:-3], make_token(SECRET, a.campaign_id, ann + 50)):
            r = http.post(f"{base}/{bad}", data=ONE_CLICK)
            assert r.status_code == 404 and bad not in r.text
        assert http.post(f"{base}/{token}", data={"x": "y"}).status_code == 400
        assert status(db, a.list_id, ann) == "subscribed"

        r = http.post(
            f"{base}/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        assert "set-cookie" not in r.headers and r.headers["cache-control"] == "no-store"
        assert status(db, a.list_id, ann) == "unsubscribed"
        assert (
            http.post(
                f"{base}/{token}", files={"List-Unsubscribe": (None, "One-Click")}
            ).status_code
            == 200
        )
    assert events(db) == [
        ("unsubscribed", a.campaign_id, ann, "ann@example.com", "one-click", None)
    ]
    assert enqueued(db, a.list_id) == ["bob@example.com"]


def test_the_link_in_a_received_message_unsubscribes_and_the_next_campaign_skips_it(
    world: World, serve: Callable[..., str]
) -> None:
    port = free_port()
    world.configure("unsubscribe", url=f"http://127.0.0.1:{port}/u")
    world.mx("a.test", (10, "127.0.0.2"))
    world.subscribers(["ann@a.test", "bob@a.test"])
    serve(world.db_url, WORLD_SECRET, port=port, config=world.config_path())
    world.send(world.campaign())
    to_ann = next(
        email.message_from_bytes(m.data) for m in world.received() if m.rcpt_tos == ["ann@a.test"]
    )
    assert to_ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.search(r"<(https?://[^>]+)>", to_ann["List-Unsubscribe"])[1]  # type: ignore[index]
    # What a mailbox provider sends (RFC 8058 section 3.2): no cookies, no redirects.
    r = httpx.post(
        link,
        content=b"List-Unsubscribe=One-Click",
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200

    for server in world.servers.values():
        server.messages.clear()
    second = world.campaign()
    world.send(second)
    assert world.recipients_received() == ["bob@a.test"]
    assert sorted(world.states(second)) == ["bob@a.test"]
