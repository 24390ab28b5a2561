"""``/metrics`` and ``/healthz`` of a real ``bulkmail serve``, scraped over HTTP after a send
and parsed with prometheus_client's own text parser."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bulkmail.db.engine import Database
from bulkmail.peers.smtp import free_port
from bulkmail.web.metrics import ops_routes, provider_of, reason_of
from tests.integration.test_webhooks import send
from tests.integration.world import SECRET, World

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> tuple[Samples, str]:
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, response.text


@pytest.fixture
def serve(world: World, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "BULKMAIL_SECRET": SECRET}
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkmail", "--config", str(world.config_path()), "serve"]
        + ["--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_metrics_after_a_send_count_deliveries_rates_deferrals_and_the_outbox(
    world: World, serve: str
) -> None:
    world.configure("webhooks", urls=["http://127.0.0.1:9/hooks"])  # never drained here
    cid = send(world)  # 4 sent (one after a 451 4.7.1), 1 bounced 5.1.1
    world.subscribers(["eve@queued.test", "fay@queued.test"])  # a second campaign, not sent
    second = world.campaign()
    world.sql("UPDATE campaigns SET state = 'paused' WHERE id = :c", c=second)
    world.sql(
        "INSERT INTO deliveries (campaign_id, subscriber_id, email, domain, state, attempts,"
        " next_attempt_at, created_at, updated_at)"
        " SELECT :c, id, email, domain, 'queued', 0, 0, 0, 0 FROM subscribers"
        " WHERE domain = 'queued.test'",
        c=second,
    )
    health = httpx.get(f"{serve}/healthz", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "ok", "database": "ok"})
    m, raw = scrape(serve)
    c, c2 = (("campaign", str(cid)),), (("campaign", str(second)),)
    assert m[("bulkmail_deliveries", (*c, ("state", "sent")))] == 4
    assert m[("bulkmail_deliveries", (*c, ("state", "bounced")))] == 1
    assert m[("bulkmail_deliveries", (*c2, ("state", "queued")))] == 2
    assert m[("bulkmail_bounce_rate", c)] == pytest.approx(1 / 5)
    assert m[("bulkmail_complaint_rate", c)] == 0
    assert m[("bulkmail_send_rate", ())] == pytest.approx(4 / 60)
    assert m[("bulkmail_deferrals", (("provider", "news.test"), ("reason", "4.7.1")))] == 1
    assert m[("bulkmail_queue_depth", (("domain", "queued.test"),))] == 2
    assert m[("bulkmail_campaigns", (("state", "finished"),))] == 1
    assert m[("bulkmail_campaigns", (("state", "paused"),))] == 1
    assert m[("bulkmail_outbox_pending", ())] == 8  # 4 sent, 1 bounced, 1 deferred, 2 states
    assert m[("bulkmail_outbox_lag_seconds", ())] > 0
    assert "# HELP bulkmail_deferrals" in raw and "# TYPE bulkmail_queue_depth gauge" in raw


def test_healthz_is_503_and_metrics_unavailable_when_the_database_is_not_initialised(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # the file exists, the schema does not
    db = Database(f"sqlite:///{path}")
    client = TestClient(Starlette(routes=ops_routes(db)))
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert client.get("/metrics").status_code == 503
    db.dispose()


def test_deferral_labels_are_per_provider_and_reason() -> None:
    assert provider_of("gmail-smtp-in.l.google.com.") == "google.com"
    assert provider_of("mx1.mail.yahoo.co.jp") == "yahoo.co.jp"
    assert provider_of(None) == "none"
    assert reason_of(451, "4.7.1") == "4.7.1"
    assert reason_of(421, None) == "code 421"
    assert reason_of(None, None) == "no reply"
