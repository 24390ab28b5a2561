"""The HTML report opens in headless Chromium: charts drawn, nothing fetched, no console error.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no websocket library is
needed. Every console message, uncaught exception, log entry and network request of the page is
collected; a screenshot is written to the test's temporary folder. Skipped only when Debian's
``chromium`` is not installed (scripts/install-test-peers.sh installs it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bulkmail.cli.main import cli
from tests.integration.test_reports import send_known_campaign
from tests.integration.world import World
from tests.tools import require

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def needs_chromium() -> None:
    """Skip without Chromium on a laptop; fail in CI (tests/tools.py)."""
    require(CHROMIUM is not None, "Chromium (Debian package chromium)")


FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


@dataclass
class PageVisit:
    """What a page did while it loaded."""

    errors: list[str] = field(default_factory=list)  # console errors, exceptions, error logs
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)  # results of the probes


def _above_ten(fd: int) -> int:
    """The same pipe end on a descriptor >= 10, so moving it to 3 or 4 cannot clobber another."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium over a DevTools pipe (one page, one session)."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _above_ten(to_chrome_r), _above_ten(from_chrome_w)
        # bash moves the pipe ends to fds 3 and 4, where chromium expects them (no preexec_fn:
        # it is unsafe with the test servers' threads running)
        wire = f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                wire,
                "bash",
                str(CHROMIUM),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--window-size=1280,2000",
                "about:blank",
            ],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._id, self.seen = b"", 0, []  # type: ignore[var-annotated]
        self.session: str | None = None

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._id, timeout)
        assert "error" not in reply, reply
        return reply.get("result", {})

    def wait(self, match: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                self.seen.append(message)
                if match(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            if select.select([self._in], [], [], min(left, 0.5))[0]:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the DevTools pipe")
                self._buffer += chunk

    def visit(self, url: str, probes: dict[str, str], screenshot: Path) -> PageVisit:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", {"url": url})
        self.wait(lambda m: m.get("method") == "Page.loadEventFired")
        visit = PageVisit()
        for name, expression in probes.items():
            result = self.call(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}
            )
            visit.values[name] = result["result"].get("value")
        png = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        screenshot.write_bytes(base64.b64decode(png["data"]))
        for m in self.seen:
            method, params = m.get("method"), m.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                visit.errors.append(json.dumps(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                visit.errors.append(json.dumps(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                visit.errors.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
        return visit

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (TimeoutError, EOFError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


def open_in_chromium(page: Path, probes: dict[str, str], screenshot: Path) -> PageVisit:
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(Path(profile))
        try:
            return browser.visit(page.resolve().as_uri(), probes, screenshot)
        finally:
            browser.close()


CHART_PROBES = {
    "charts": "[...document.querySelectorAll('svg.chart')].map(s => s.id)",
    # drawn: each chart has a real size on the page and at least one mark with an area
    "sizes": "[...document.querySelectorAll('svg.chart')].map(s => "
    "{const r = s.getBoundingClientRect(); return [s.id, r.width > 300, r.height > 100]})",
    "marks": "Object.fromEntries([...document.querySelectorAll('svg.chart')].map(s => [s.id, "
    "[...s.querySelectorAll('[data-value]')].filter(e => "
    "{const b = e.getBBox(); return b.width > 0 && b.height > 0}).length]))",
    "title": "document.title",
}


@pytest.mark.usefixtures("needs_chromium")
def test_the_checker_sees_console_errors_and_fetches(tmp_path: Path) -> None:
    """The browser check can fail: a page that logs an error, throws and fetches is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><title>bad</title><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom'); throw new Error('thrown');</script>"
    )
    visit = open_in_chromium(page, {"title": "document.title"}, tmp_path / "bad.png")
    assert visit.values["title"] == "bad"
    assert any("boom" in e for e in visit.errors)
    assert any("thrown" in e for e in visit.errors)
    assert "http://127.0.0.1:9/x.png" in visit.requests


@pytest.mark.usefixtures("needs_chromium")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_html_report_renders_its_charts_in_chromium_without_errors(world: World) -> None:
    cid = send_known_campaign(world)
    page = world.root / "report.html"
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(world.config_path()),
            "campaigns",
            "report",
            str(cid),
            "--html",
            str(page),
        ],
    )
    assert result.exit_code == 0, result.output
    screenshot = world.root / "report.png"
    visit = open_in_chromium(page, CHART_PROBES, screenshot)
    assert visit.errors == []
    assert [u for u in visit.requests if not u.startswith("file:")] == []
    assert visit.values["title"] == f"Campaign {cid} report: test"
    assert visit.values["charts"] == ["chart-timeline", "chart-destinations", "chart-bounces"]
    assert all(wide and tall for _, wide, tall in visit.values["sizes"]), visit.values["sizes"]
    # timeline: sent/deferred/bounced/expired in one or two buckets; 4 domains x outcomes;
    # two bounce categories
    assert 4 <= visit.values["marks"]["chart-timeline"] <= 8
    assert visit.values["marks"]["chart-destinations"] == 4
    assert visit.values["marks"]["chart-bounces"] == 2
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000
