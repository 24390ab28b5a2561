"""A remote server's reply with terminal escapes, printed by the CLI: shown, never obeyed.

The receiving server answers RCPT with ``550 5.1.1 <OSC 2 title><BEL><clear screen>``; the
report, the CSV export on a terminal (a real pty) and the suppression list must print no raw
ESC, BEL or CSI, while JSON Lines and CSV written to a file keep the text exact.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from click.testing import CliRunner
from sqlalchemy import text

from bulkmail.cli.main import cli
from bulkmail.peers.smtp import Script
from tests.integration.world import World

HOSTILE = "550 5.1.1 \x1b]2;owned\x07\x1b[2J\x9b31m no such user"
RAW = ("\x1b", "\x07", "\x9b")


def run(w: World, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(w.config_path()), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def on_a_terminal(w: World, *args: str) -> str:
    """The command's stdout when stdout is a terminal (a pty), as text."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkmail", "--config", str(w.config_path()), *args],
        stdout=child,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "BULKMAIL_DATABASE_URL"},
    )
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(30) == 0
    return b"".join(chunks).decode("utf-8")


def send_to_hostile_server(w: World) -> int:
    w.mx(
        "evil.test",
        (10, "127.0.0.2"),
        script=Script(rcpt_replies={"victim@evil.test": HOSTILE}),
    )
    w.mx("a.test", (10, "127.0.0.3"))
    w.subscribers(["victim@evil.test", "fine@a.test"])
    cid = w.campaign()
    assert w.send(cid, wait=True).state == "finished"
    return cid


def test_a_reply_with_terminal_escapes_is_shown_escaped_by_every_text_command(
    world: World,
) -> None:
    cid = send_to_hostile_server(world)

    report = run(world, "campaigns", "report", str(cid))
    assert "no such user" in report  # the reply is there...
    assert not any(c in report for c in RAW)  # ...but not its escapes
    assert "\\x1b]2;owned\\x07\\x1b[2J\\x9b31m" in report.replace("\n", "").replace("│", "")

    csv_on_terminal = on_a_terminal(world, "events", "export", "--campaign", str(cid))
    assert "no such user" in csv_on_terminal
    assert not any(c in csv_on_terminal for c in RAW)
    assert "\\x1b]2;owned\\x07\\x1b[2J\\x9b31m" in csv_on_terminal

    suppressed = run(world, "suppressions", "list")
    assert "victim@evil.test" in suppressed
    assert not any(c in suppressed for c in RAW)


def test_json_lines_and_csv_to_a_file_keep_the_reply_exact(world: World) -> None:
    cid = send_to_hostile_server(world)
    csv_to_file = run(world, "events", "export", "--campaign", str(cid))
    assert HOSTILE.split(" ", 2)[2] in csv_to_file
    jsonl = run(world, "events", "export", "--campaign", str(cid), "--format", "jsonl")
    assert not any(c in jsonl for c in RAW[:2])  # JSON escapes C0 controls itself
    assert "\\u001b]2;owned\\u0007" in jsonl


def test_campaign_list_show_and_status_show_a_hostile_name_and_reason_escaped(world: World) -> None:
    world.mx("a.test", (10, "127.0.0.3"))
    world.subscribers(["fine@a.test"])
    cid = world.campaign()
    with world.db().session() as s:  # what an auto-pause writes: the server's last reply
        s.execute(
            text("UPDATE campaigns SET state_reason = :r, name = :n WHERE id = :c"),
            {"r": HOSTILE, "n": "May\x1b[2J", "c": cid},
        )
    listed = run(world, "campaigns", "list")
    assert "May\\x1b[2J" in listed and not any(c in listed for c in RAW), listed
    for command in ("show", "status"):
        out = run(world, "campaigns", command, str(cid))
        assert "no such user" in out and "\\x1b]2;owned" in out, out
        assert not any(c in out for c in RAW), command
