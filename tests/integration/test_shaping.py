"""Adaptive backoff against a real SMTP peer on loopback hosting a "Google" domain (its MX is
aspmx.l.google.com in the loopback DNS): a ``421 4.7.28`` after five messages suspends or
throttles the provider's site, no retry step is spent, and sending resumes when the action
expires; a suspension another worker wrote to the database holds for this one.

Timing is asserted only as lower bounds the engine guarantees (nothing may arrive before a
suspension ends; a throttled rate spaces messages at least its interval apart) and as counts
and ordering, never as "within N seconds"."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from bulkmail.cli.main import cli as main_cli
from bulkmail.delivery.classify import Reply
from bulkmail.peers.smtp import Received, Script, SmtpServer
from bulkmail.shaping import store
from bulkmail.shaping.backoff import Action
from tests.integration.world import World

GOOGLE_MX = "aspmx.l.google.com"
THROTTLE = "421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail"


def google_domain(world: World, script: Script) -> SmtpServer:
    """gm.test, hosted by "Google": MX aspmx.l.google.com -> 127.0.0.5, one connection."""
    world.zone.add("gm.test", "MX", f"10 {GOOGLE_MX}.")
    world.zone.add(GOOGLE_MX, "A", "127.0.0.5")
    world.configure("providers.google", connections=1)  # inline override: strict ordering
    return world.server("127.0.0.5", script=script)


def rules(world: World, body: str) -> None:
    (world.root / "rules.toml").write_text(body, encoding="utf-8")
    world.configure("shaping", rules_file="rules.toml")


def after(messages: list[Received], at: float) -> list[Received]:
    return [m for m in messages if m.at > at]


def test_a_421_4_7_28_suspends_the_site_and_spends_no_retry_step(world: World) -> None:
    rules(
        world,
        """[[backoff]]
name = "google-4.7.28-rate-limited"
provider = "google"
enhanced = "4.7.28"
action = "suspend"
duration = "3s"
""",
    )
    peer = google_domain(world, Script(nth_data_replies={6: THROTTLE}))
    world.subscribers([f"u{i:02d}@gm.test" for i in range(12)])
    cid = world.campaign()
    world.send(cid, wait=True)

    assert len(peer.refused) == 1
    refused = peer.refused[0]
    before = [m for m in peer.messages if m.at <= refused.at]
    assert len(before) == 5
    resumed = after(peer.messages, refused.at)
    assert len(resumed) == 7  # the throttled one and the six that waited
    assert min(m.at for m in resumed) - refused.at >= 2.5  # nothing before the suspension ended
    states = world.states(cid)
    assert {d.state for d in states.values()} == {"sent"}
    assert {d.attempts for d in states.values()} == {1}  # the 421 and the wait cost no step
    assert refused.rcpt_tos[0] in {r for m in resumed for r in m.rcpt_tos}
    events = world.sql(
        "SELECT kind, text, code, enhanced FROM events WHERE campaign_id = :c", c=cid
    )
    assert not [e for e in events if e[0] == "deferred"]
    backoffs = [e for e in events if e[0] == "backoff"]
    assert len(backoffs) == 1
    assert "google-4.7.28-rate-limited" in backoffs[0][1] and backoffs[0][2:] == (421, "4.7.28")
    rows = world.sql("SELECT site, rule, kind, until - created_at FROM site_actions")
    assert rows == [("provider:google", "google-4.7.28-rate-limited", "suspend", 3.0)]


def test_a_throttle_lowers_the_rate_then_lifts_when_it_expires(world: World) -> None:
    rules(
        world,
        """[[backoff]]
name = "google-4.7.28-rate-limited"
provider = "google"
enhanced = "4.7.28"
action = "throttle"
rate = "2/s"
duration = "3s"
""",
    )
    peer = google_domain(world, Script(nth_data_replies={6: THROTTLE}))
    world.subscribers([f"u{i:02d}@gm.test" for i in range(25)])
    cid = world.campaign()
    world.send(cid, wait=True)

    assert len(peer.refused) == 1
    refused = peer.refused[0].at
    times = sorted(m.at for m in peer.messages)
    assert len(times) == 25
    throttled = [t for t in times if refused < t <= refused + 3.0]
    gaps = [b - a for a, b in zip(throttled, throttled[1:], strict=False)]
    assert len(throttled) >= 2 and min(gaps) >= 0.45  # 2/s: at least 0.5 s apart (GCRA)
    assert len(throttled) <= 7  # 3 s at 2/s, the first at once, and one tick to lift it
    lifted = [t for t in times if t > refused + 3.0]  # expired: lifted at the next tick
    lifted_gaps = sorted(b - a for a, b in zip(lifted, lifted[1:], strict=False))
    assert len(lifted) >= 5 and lifted_gaps[len(lifted_gaps) // 2] < 0.45  # faster again
    assert {d.attempts for d in world.states(cid).values()} == {1}


def test_a_suspension_another_worker_stored_holds_for_this_one(world: World) -> None:
    peer = google_domain(world, Script())
    world.subscribers([f"u{i}@gm.test" for i in range(3)])
    cid = world.campaign()
    started = time.time()
    db = world.db()
    action = Action("provider:google", "someone-elses-rule", "suspend", started + 2.5)
    store.record(db, action, Reply(421, "slow down", "4.7.28"), owner="other-worker", now=started)
    db.dispose()
    t0 = time.monotonic()
    world.send(cid, wait=True)
    assert len(peer.messages) == 3
    assert min(m.at for m in peer.messages) - t0 >= 2.0
    assert {d.attempts for d in world.states(cid).values()} == {1}


def test_domains_of_one_provider_share_its_site(world: World) -> None:
    peer = google_domain(world, Script(delay=0.05))
    world.zone.add("other.test", "MX", "10 alt1.aspmx.l.google.com.")  # another MX set
    world.zone.add("alt1.aspmx.l.google.com", "A", "127.0.0.5")
    people = [f"a{i}@gm.test" for i in range(10)] + [f"b{i}@other.test" for i in range(10)]
    world.subscribers(people)
    cid = world.campaign()
    world.send(cid, wait=True)
    assert len(peer.messages) == 20
    assert peer.max_concurrent_sessions == 1  # one site, [providers.google] connections = 1


def cli(world: World, *args: str) -> str:
    out = CliRunner().invoke(main_cli, ["--config", str(world.config_path()), *args])
    assert out.exit_code == 0, out.output
    return out.output


def test_shaping_explain_shows_the_provider_site_limits_sources_and_backoffs(world: World) -> None:
    google_domain(world, Script())  # gm.test -> aspmx.l.google.com, [providers.google] 1 conn
    world.subscribers(["a@gm.test"])  # the database is initialised
    data = json.loads(cli(world, "shaping", "explain", "GM.test.", "--json"))
    assert (data["site"], data["provider"]) == ("provider:google", "google")
    assert [m["host"] for m in data["mx"]] == [GOOGLE_MX]
    assert data["mx"][0]["addresses"] == ["127.0.0.5"]
    limits = data["limits"]
    assert limits["connections"]["value"] == 1
    assert 'bulkmail.toml [providers."google"]' in limits["connections"]["set_by"]
    assert limits["messages_per_connection"]["value"] == 50
    assert "bulkmail/shaping/providers.toml" in limits["messages_per_connection"]["set_by"]
    assert "[limits.default]" in limits["rate"]["set_by"]
    assert data["backoffs"] == [] and data["now"]["suspended_until"] is None
    assert "no site is suspended or throttled" in cli(world, "shaping", "status")

    now = time.time()
    db = world.db()
    reply = Reply(421, "unusual rate \x1b[31m", "4.7.28")
    store.record(
        db, Action("provider:google", "r-4.7.28", "suspend", now + 600), reply, owner="w", now=now
    )
    store.record(
        db, Action("mx.other.test", "gone", "suspend", now - 1), reply, owner="w", now=now - 9
    )
    db.dispose()
    data = json.loads(cli(world, "shaping", "explain", "gm.test", "--json"))
    (backoff,) = data["backoffs"]
    assert backoff["rule"] == "r-4.7.28" and backoff["action"] == "suspend"
    assert data["now"]["suspended_until"] == backoff["until"]
    assert 590 <= backoff["seconds_left"] <= 600
    text = cli(world, "shaping", "explain", "gm.test")
    assert "site: provider:google (provider google)" in text
    assert "suspended until" in text and "rule r-4.7.28" in text and "\x1b" not in text
    status = json.loads(cli(world, "shaping", "status", "--json"))["backoffs"]
    assert [b["site"] for b in status] == ["provider:google"]  # the expired one is not listed
    assert "provider:google: suspend until" in cli(world, "shaping", "status")


def test_an_unknown_provider_in_a_backoff_rule_is_a_one_line_error(world: World) -> None:
    rules(
        world,
        '[[backoff]]\nname = "x"\nprovider = "nobody"\ncode = 421\n'
        'action = "suspend"\nduration = "1m"\n',
    )
    out = CliRunner().invoke(main_cli, ["--config", str(world.config_path()), "shaping", "status"])
    assert out.exit_code != 0
    assert "rules.toml: backoff 'x': unknown provider" in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1


def test_too_many_connections_at_the_greeting_throttles_any_site(world: World) -> None:
    rules(
        world,
        """[[backoff]]
name = "generic-too-many"
code = 421
text = 'too many connections'
action = "throttle"
connections = 1
rate = "20/s"
duration = "3s"
""",
    )
    world.configure("limits.default", connections=4)
    busy = "421 4.7.0 Too many connections from your IP, slow down"
    world.mx("busy.test", (10, "127.0.0.6"), script=Script(nth_greeting_replies={2: busy}))
    world.subscribers([f"u{i}@busy.test" for i in range(12)])
    cid = world.campaign()
    world.send(cid, wait=True)
    assert len(world.servers["127.0.0.6"].messages) == 12
    states = world.states(cid)
    assert {d.attempts for d in states.values()} == {1}  # the refused connection cost no step
    kinds = [k for (k,) in world.sql("SELECT kind FROM events WHERE campaign_id = :c", c=cid)]
    assert kinds.count("backoff") == 1 and "deferred" not in kinds
    rows = world.sql("SELECT site, rule, kind, connections, rate FROM site_actions")
    assert rows == [("mx-127-0-0-6.news.test", "generic-too-many", "throttle", 1, 20.0)]


def test_explain_shows_a_backoff_being_undone_in_steps(world: World) -> None:
    world.zone.add("gw.test", "MX", f"10 {GOOGLE_MX}.")
    world.zone.add(GOOGLE_MX, "A", "127.0.0.5")
    world.subscribers(["a@gw.test"])
    now = time.time()
    db = world.db()
    over = Action("provider:google", "r", "suspend", now - 1, recover_until=now + 299)
    store.record(db, over, Reply(421, "unusual rate", "4.7.28"), owner="w", now=now - 60)
    db.dispose()
    data = json.loads(cli(world, "shaping", "explain", "gw.test", "--json"))
    assert data["limits"]["connections"]["value"] == 5  # Google's, shipped
    assert data["now"] == {"connections": 2, "rate": 0.0, "suspended_until": None}
    (backoff,) = data["backoffs"]
    assert backoff["seconds_left"] <= 0 and backoff["recovering_until"] is not None
    assert "undone in steps until" in cli(world, "shaping", "status")
