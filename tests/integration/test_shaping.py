"""Adaptive backoff against a real SMTP peer on loopback hosting a "Google" domain (its MX is
aspmx.l.google.com in the loopback DNS): a ``421 4.7.28`` after five messages suspends or
throttles the provider's site, no retry step is spent, and sending resumes when the action
expires; a suspension another worker wrote to the database holds for this one.

Timing is asserted only as lower bounds the engine guarantees (nothing may arrive before a
suspension ends; a throttled rate spaces messages at least its interval apart) and as counts
and ordering, never as "within N seconds"."""

from __future__ import annotations

import time

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
