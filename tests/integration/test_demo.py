"""``bulkmail demo`` as a new user meets it: what it prints can be pasted and works.

The demo runs as a real process (umask 022, as a login shell has it); its printed lines are then
run through ``bash`` exactly as printed, and ``bulkmail serve`` started that way must answer the
unsubscribe links in the demo's own .eml files.
"""

from __future__ import annotations

import email
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent)


@dataclass
class DemoRun:
    out: Path
    stdout: str
    stderr: str
    env: dict[str, str]

    def commands(self) -> list[str]:
        """The ``$ ...`` lines the demo echoed, without the prompt."""
        return [line[2:] for line in self.stderr.splitlines() if line.startswith("$ ")]

    def serve_line(self) -> str:
        lines = [line.strip() for line in self.stdout.splitlines() if " serve " in line]
        assert len(lines) == 1, self.stdout
        return lines[0]

    def paste(self, line: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        return subprocess.run(
            ["bash", "-c", line], env=self.env, cwd="/", text=True, capture_output=True, **kwargs
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    env = {k: v for k, v in os.environ.items() if "SECRET" not in k and k != "BULKMAIL_CONFIG"}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    proc = subprocess.run(
        [sys.executable, "-m", "bulkmail", "demo", "--out", str(out)],
        env=env,
        text=True,
        capture_output=True,
        timeout=180,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert proc.returncode == 0, proc.stderr
    return DemoRun(out.resolve(), proc.stdout, proc.stderr, env)


def test_demo_echoes_quoted_commands_with_its_config(demo: DemoRun) -> None:
    config = str(demo.out / "bulkmail.toml")
    commands = [shlex.split(line) for line in demo.commands()]
    assert len(commands) == 5
    for argv in commands:
        assert argv[:3] == ["bulkmail", "--config", config], argv
    create = next(argv for argv in commands if argv[3:5] == ["campaigns", "create"])
    assert create[create.index("--subject") + 1] == (
        "Hello {{ subscriber.name or 'there' }}: the demo newsletter"
    )
    assert create[create.index("--from") + 1] == "Demo News <news@news.test>"


def test_a_pasted_demo_command_runs(demo: DemoRun) -> None:
    line = next(line for line in demo.commands() if " campaigns create " in line)
    result = demo.paste(line)
    assert result.returncode == 0, result.stderr
    assert "campaign 2 created" in result.stdout


def _unsubscribe_url(eml: Path) -> str:
    message = email.message_from_bytes(eml.read_bytes())
    match = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert match, message["List-Unsubscribe"]
    return match.group(1)


def test_serve_as_printed_answers_the_links_in_the_demo_mail(demo: DemoRun) -> None:
    serve = demo.serve_line()
    assert f"{demo.out / 'demo.env'}" in serve
    url = _unsubscribe_url(min((demo.out / "mail").glob("*.eml")))
    proc = subprocess.Popen(
        ["bash", "-c", serve],
        env=demo.env,
        cwd="/",
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
                    page = response.read().decode()
                break
            except urllib.error.HTTPError as exc:
                status, page = exc.code, ""
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        assert status == 200, page
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def test_demo_secret_is_kept_owner_only_and_exported(demo: DemoRun) -> None:
    env_file = demo.out / "demo.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert re.search(r"^export BULKMAIL_DEMO_SECRET=[0-9a-f]{64}$", env_file.read_text(), re.M)


def test_demo_files_are_owner_only_under_umask_022(demo: DemoRun) -> None:
    paths = [demo.out, *demo.out.rglob("*")]
    assert any(p.suffix == ".eml" for p in paths) and any(p.name == "demo.db" for p in paths)
    loose = [f"{oct(p.stat().st_mode & 0o777)} {p}" for p in paths if p.stat().st_mode & 0o077]
    assert not loose, loose
