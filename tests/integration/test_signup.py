"""Double opt-in sign-up through a real ``bulkmail serve``: the form in headless Chromium, the
confirmation mail captured by a local SMTP peer (DKIM-signed), the confirm page whose GET
changes nothing, its button, and the membership; plus the honeypot and the rate limit."""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import httpx
import pytest
from click.testing import CliRunner

from bulkmail.audience.signup import SignupRequest, make_token
from bulkmail.cli.main import cli
from bulkmail.peers.smtp import Received, free_port
from tests.integration.test_report_browser import Browser
from tests.integration.world import SECRET, SENDING_DOMAIN, World
from tests.tools import require

CHROMIUM_OK = Path("/usr/bin/chromium").exists()


def members(world: World) -> list[tuple[str, str, str]]:
    return [
        tuple(r)
        for r in world.sql(
            "SELECT s.email, s.name, m.status FROM memberships m"
            " JOIN subscribers s ON s.id = m.subscriber_id ORDER BY s.email"
        )
    ]


@pytest.fixture
def site(world: World, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``site(**signup_keys)``: a double opt-in list "news", a plain list "plain", the MX of
    people.test capturing mail, and ``bulkmail serve`` with [signup]; returns the form's base
    URL (``http://127.0.0.1:PORT/subscribe``)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**signup: object) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}/subscribe"
        world.mx("people.test", (10, "127.0.0.2"))
        world.configure("signup", url=base, from_address=f"News <news@{SENDING_DOMAIN}>", **signup)
        run = CliRunner().invoke(
            cli,
            ["--config", str(world.config_path()), "lists", "create", "news", "--double-opt-in"],
        )
        assert run.exit_code == 0, run.output
        run = CliRunner().invoke(
            cli, ["--config", str(world.config_path()), "lists", "create", "plain"]
        )
        assert run.exit_code == 0, run.output
        log = tmp_path / "serve.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulkmail", "--config", str(world.config_path()), "serve"]
            + ["--port", str(port)],
            env={**os.environ, "BULKMAIL_SECRET": SECRET},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return base
            except httpx.TransportError:
                time.sleep(0.05)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_mail(world: World, n: int = 1) -> list[Received]:
    deadline = time.monotonic() + 10
    while len(world.received()) < n:
        assert time.monotonic() < deadline, "no confirmation mail arrived"
        time.sleep(0.05)
    return world.received()


def dnsfunc_for(world: World) -> Callable[..., bytes]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port = ["127.0.0.1"], world.dns.port
        answer = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    return dnsfunc


def _h1(browser: Browser) -> str:
    result = browser.call(
        "Runtime.evaluate",
        {"expression": "document.querySelector('h1').textContent", "returnByValue": True},
    )
    return str(result["result"].get("value"))


def _act(browser: Browser, script: str) -> None:
    """Run ``script`` (which submits a form) and wait for the next page to load."""
    browser.call("Runtime.evaluate", {"expression": script})
    browser.wait(lambda m: m.get("method") == "Page.loadEventFired")


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_sign_up_in_chromium_confirms_only_from_the_confirmation_page(
    world: World, site: Callable[..., str], tmp_path: Path
) -> None:
    require(CHROMIUM_OK, "Chromium (Debian package chromium)")
    world.configure("webhooks", urls=["http://127.0.0.1:9/unused"])
    base = site()
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(Path(profile))
        try:
            visit = browser.visit(
                f"{base}/news",
                {
                    "h1": "document.querySelector('h1').textContent",
                    "fields": "[...document.querySelectorAll('input')].map(i => i.name)",
                    "honeypot_off_screen": "document.querySelector('[name=website]')"
                    ".getBoundingClientRect().right < 0",
                },
                tmp_path / "form.png",
            )
            assert visit.errors == []
            assert visit.values["h1"] == "Subscribe to news"
            assert visit.values["fields"] == ["email", "name", "website"]
            assert visit.values["honeypot_off_screen"] is True
            _act(
                browser,
                "document.querySelector('[name=email]').value = 'Reader@People.test';"
                "document.querySelector('[name=name]').value = 'Rea Der';"
                "document.querySelector('button').click()",
            )
            assert _h1(browser) == "Check your inbox"
            [mail] = wait_for_mail(world)
            assert mail.rcpt_tos == ["Reader@people.test"]
            assert dkim.verify(mail.data, dnsfunc=dnsfunc_for(world))
            message = email.message_from_bytes(mail.data)
            assert message["Subject"] == "Please confirm your subscription to news"
            body = message.get_payload(decode=True).decode()
            [link] = re.findall(r"http://\S+/subscribe/confirm/\S+", body)
            assert members(world) == []  # nothing before the confirmation
            browser.call("Page.navigate", {"url": link})
            browser.wait(lambda m: m.get("method") == "Page.loadEventFired")
            assert _h1(browser) == "Confirm your subscription to news"
            assert members(world) == []  # opening the link (a scanner) confirms nothing
            _act(browser, "document.querySelector('button').click()")
            assert _h1(browser) == "You are subscribed to news"
        finally:
            browser.close()
    assert members(world) == [("Reader@people.test", "Rea Der", "subscribed")]
    assert world.sql("SELECT kind, source FROM events") == [("subscribed", "signup")]
    [(kind, payload)] = world.sql("SELECT kind, payload FROM outbox")
    assert kind == "subscriber.subscribed" and '"email":"Reader@people.test"' in payload
    again = httpx.post(link, timeout=10)  # confirming twice changes nothing more
    assert again.status_code == 200 and members(world) == [
        ("Reader@people.test", "Rea Der", "subscribed")
    ]


def test_a_filled_honeypot_looks_accepted_but_mails_nobody(
    world: World, site: Callable[..., str]
) -> None:
    base = site()
    r = httpx.post(
        f"{base}/news", data={"email": "bot@people.test", "website": "http://spam"}, timeout=10
    )
    assert r.status_code == 200 and "Check your inbox" in r.text
    time.sleep(0.5)
    assert world.received() == [] and members(world) == []


def test_sign_ups_over_the_rate_limit_get_429_and_no_mail(
    world: World, site: Callable[..., str]
) -> None:
    base = site(rate_limit=2)
    codes = [
        httpx.post(f"{base}/news", data={"email": f"p{i}@people.test"}, timeout=10).status_code
        for i in range(4)
    ]
    assert codes == [200, 200, 429, 429]
    assert len(wait_for_mail(world, 2)) == 2
    time.sleep(0.3)
    assert sorted(r for m in world.received() for r in m.rcpt_tos) == [
        "p0@people.test",
        "p1@people.test",
    ]


def test_serve_names_where_the_sign_up_forms_are(
    world: World, site: Callable[..., str], tmp_path: Path
) -> None:
    base = site()
    assert f"bulkmail: sign-up forms on {base}/<list>" in (tmp_path / "serve.log").read_text()


def test_forged_expired_and_plain_list_links_are_refused(
    world: World, site: Callable[..., str]
) -> None:
    base = site(confirm_within=60.0)
    news = world.sql("SELECT id FROM lists WHERE name = 'news'")[0][0]
    plain = world.sql("SELECT id FROM lists WHERE name = 'plain'")[0][0]
    old = make_token(
        SECRET.encode(), SignupRequest(news, "a@people.test", "", int(time.time()) - 120)
    )
    forged = make_token(
        b"not-the-secret-000000", SignupRequest(news, "a@people.test", "", int(time.time()))
    )
    to_plain = make_token(
        SECRET.encode(), SignupRequest(plain, "a@people.test", "", int(time.time()))
    )
    for token in (old, forged, to_plain, "garbage", forged.split(".")[0]):
        assert httpx.get(f"{base}/confirm/{token}", timeout=10).status_code == 404
        assert httpx.post(f"{base}/confirm/{token}", timeout=10).status_code == 404
    assert httpx.get(f"{base}/plain", timeout=10).status_code == 404  # not double opt-in
    assert (
        httpx.post(f"{base}/plain", data={"email": "a@people.test"}, timeout=10).status_code == 404
    )
    bad = httpx.post(f"{base}/news", data={"email": "not an address"}, timeout=10)
    assert bad.status_code == 400 and "valid address" in bad.text
    assert members(world) == [] and world.received() == []
