"""Traffic shaping's pure parts: the shipped pack, provider roll-up, precedence of limits,
reply matching and the limits under backoffs, on a fake clock (plain numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmail.config import Limits, parse_settings
from bulkmail.delivery.classify import Reply
from bulkmail.delivery.routing import MxHost, Route
from bulkmail.errors import ConfigError
from bulkmail.shaping.backoff import (
    Action,
    action_for,
    limits_under,
    match_rule,
    suspended_until,
)
from bulkmail.shaping.pack import effective_limits, load_pack, parse_pack, shipped_pack
from bulkmail.shaping.shaper import Shaper, provider_site


def route(domain: str, *hosts: str, site: str = "") -> Route:
    mx = tuple(MxHost(h, 10, ("192.0.2.1",)) for h in hosts)
    return Route(domain, mx, site or ",".join(sorted(hosts)))


def test_every_domain_hosted_by_google_rolls_up_to_one_site() -> None:
    pack = shipped_pack()
    a, provider = provider_site(
        route("a.test", "aspmx.l.google.com", "alt1.aspmx.l.google.com"), pack
    )
    b, _ = provider_site(route("b.test", "gmail-smtp-in.l.google.com"), pack)
    assert a.site == b.site == "provider:google"
    assert provider is not None and provider.values["connections"] == 5
    assert provider.values["messages_per_connection"] == 50


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("example-com.mail.protection.outlook.com", "microsoft"),
        ("outlook-com.olc.protection.outlook.com", "microsoft"),
        ("example-com.s-v1.mx.microsoft", "microsoft"),
        ("mta5.am0.yahoodns.net", "yahoo"),
        ("mx01.mail.icloud.com", "apple"),
        ("mx1.comcast.net", "comcast"),
        ("smtp-in.orange.fr", "orange"),
        ("mx00.emig.gmx.net", "gmx"),
        ("mx-ha03.web.de", "gmx"),
        ("mxs.mail.ru", "mailru"),
        ("mx.yandex.net", "yandex"),
    ],
)
def test_providers_are_matched_by_mx_suffix(host: str, name: str) -> None:
    provider = shipped_pack().provider_for([host])
    assert provider is not None and provider.name == name


def test_a_suffix_matches_whole_labels_and_every_host_must_match() -> None:
    pack = shipped_pack()
    assert pack.provider_for(["mx.notgoogle.com"]) is None
    assert pack.provider_for(["aspmx.l.google.com", "mx.example.net"]) is None
    same, provider = provider_site(route("c.test", "mx.example.net"), pack)
    assert provider is None and same.site == "mx.example.net"


def test_the_tls_policy_qualifier_of_a_site_is_kept() -> None:
    rolled, _ = provider_site(
        route("d.test", "aspmx.l.google.com", site="aspmx.l.google.com#dane"), shipped_pack()
    )
    assert rolled.site == "provider:google#dane"


def test_limits_precedence_domain_then_operator_then_shipped_then_default(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[providers.google]\nconnections = 3\n", encoding="utf-8")
    settings = parse_settings(
        {
            "limits": {"default": {"rate": 7}, "special.test": {"connections": 1}},
            "shaping": {"rules_file": str(rules)},
            "providers": {"yahoo": {"messages_per_connection": 9}},
        },
        "cfg.toml",
    )
    pack = load_pack(settings)
    google = pack.providers["google"]
    limits, origin = effective_limits(settings, "a.test", google)
    assert (limits.connections, limits.messages_per_connection, limits.rate) == (3, 50, 7.0)
    assert str(rules) in origin["connections"]
    assert "providers.toml" in origin["messages_per_connection"]
    assert "[limits.default]" in origin["rate"]
    yahoo, yorigin = effective_limits(settings, "y.test", pack.providers["yahoo"])
    assert yahoo.messages_per_connection == 9 and yorigin["messages_per_connection"].startswith(
        "cfg.toml"
    )
    own, oorigin = effective_limits(settings, "special.test", google)
    assert own.connections == 1 and 'limits."special.test"' in oorigin["connections"]
    plain, porigin = effective_limits(settings, "other.test", None)
    assert plain == settings.limits["default"] and "[limits.default]" in porigin["connections"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": {"x": {"connections": 2}}}, 'providers."x".mx_suffixes: required'),
        ({"providers": {"x": {"mx_suffixes": ["x.test"], "conns": 2}}}, "unknown key"),
        ({"providers": {"x": {"mx_suffixes": ["x.test"], "rate": "fast"}}}, "invalid rate"),
        (
            {"backoff": [{"name": "r", "action": "explode", "duration": "1m", "code": 421}]},
            "action",
        ),
        ({"backoff": [{"name": "r", "action": "suspend", "duration": "1m"}]}, "at least one of"),
        (
            {"backoff": [{"name": "r", "action": "suspend", "duration": "1m", "text": "("}]},
            "regular",
        ),
        (
            {"backoff": [{"name": "r", "action": "throttle", "duration": "1m", "code": 421}]},
            "needs rate",
        ),
        (
            {"backoff": [{"name": "r", "action": "suspend", "duration": "x", "code": 421}]},
            "duration",
        ),
        ({"nonsense": {}}, "unknown section"),
    ],
)
def test_a_bad_rule_pack_is_a_one_line_config_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_pack(data, "rules.toml", shipped_pack())
    assert str(caught.value).startswith("rules.toml") and "\n" not in str(caught.value)


def test_a_missing_rules_file_fails_at_config_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shaping.rules_file: .*not found"):
        parse_settings({"shaping": {"rules_file": str(tmp_path / "nope.toml")}}, "cfg.toml")
    with pytest.raises(ConfigError, match='providers."z".mx_suffixes'):
        parse_settings({"providers": {"z": {"mx_suffixes": "z.test"}}}, "cfg.toml")


@pytest.mark.parametrize(
    ("provider", "reply", "rule"),
    [
        (
            "google",
            Reply(421, "Our system has detected an unusual rate", "4.7.28"),
            "google-4.7.28-rate-limited",
        ),
        (
            "google",
            Reply(421, "Try again later, closing connection.", "4.7.0"),
            "google-4.7.0-try-again-later",
        ),
        (
            "yahoo",
            Reply(421, "[TSS04] Messages from 192.0.2.1 temporarily deferred", "4.7.0"),
            "yahoo-tss04",
        ),
        (
            "microsoft",
            Reply(
                451,
                "4.7.650 The mail server [192.0.2.1] has been temporarily rate limited",
                "4.7.650",
            ),
            "microsoft-rate-limited",
        ),
        (
            "microsoft",
            Reply(451, "Server busy. Please try again later from [192.0.2.1]. (S3150)", "4.7.500"),
            "microsoft-rate-limited",
        ),
        ("", Reply(421, "Too many connections from your IP", "4.7.0"), "generic-too-many"),
        ("gmx", Reply(421, "too many messages in this session"), "generic-too-many"),
    ],
)
def test_throttling_replies_match_their_rule(provider: str, reply: Reply, rule: str) -> None:
    found = match_rule(shipped_pack().rules, provider, reply)
    assert found is not None and found.name == rule


def test_a_rule_of_another_provider_or_a_permanent_reply_starts_nothing() -> None:
    rules = shipped_pack().rules
    assert match_rule(rules, "yahoo", Reply(421, "unusual rate", "4.7.28")) is None
    assert match_rule(rules, "", Reply(421, "unusual rate", "4.7.28")) is None
    assert match_rule(rules, "google", Reply(550, "too many connections", "5.7.1")) is None
    assert match_rule(rules, "google", Reply(451, "Greylisted, try again", "4.7.1")) is None


def test_a_suspension_holds_until_it_expires() -> None:
    rule = match_rule(shipped_pack().rules, "google", Reply(421, "unusual rate", "4.7.28"))
    assert rule is not None
    action = action_for(rule, "provider:google", now=1000.0)
    assert action.until == 1000.0 + 1800.0
    assert suspended_until([action], "provider:google", 1000.0 + 1799.0) == action.until
    assert suspended_until([action], "provider:google", 1000.0 + 1800.0) is None
    assert suspended_until([action], "provider:yahoo", 1001.0) is None


def test_throttles_lower_the_limits_the_lowest_wins_and_expire() -> None:
    base = Limits(connections=5, messages_per_connection=50, rate=0.0)
    actions = [
        Action("s", "a", "throttle", 100.0, rate=2.0),
        Action("s", "b", "throttle", 50.0, rate=1.0, connections=1),
    ]
    assert limits_under(base, actions, "s", 10.0) == Limits(1, 50, 1.0)
    assert limits_under(base, actions, "s", 60.0).rate == 2.0
    assert limits_under(base, actions, "s", 60.0).connections == 5
    assert limits_under(base, actions, "s", 100.0) is base
    assert limits_under(Limits(rate=0.5), actions[:1], "s", 10.0).rate == 0.5


def test_the_same_rule_is_not_started_twice_while_in_force() -> None:
    settings = parse_settings({}, "cfg.toml")
    shaper = Shaper(settings)
    rolled = shaper.route(route("g.test", "aspmx.l.google.com"))
    reply = Reply(421, "unusual rate", "4.7.28")
    first, new = shaper.observe(rolled.site, reply, 10.0)
    again, new_again = shaper.observe(rolled.site, reply, 11.0)
    assert first is not None and new and again == first and not new_again
    later, new_later = shaper.observe(rolled.site, reply, first.until + 1)
    assert later is not None and new_later and later.until > first.until
    shaper.adopt([], first.until + 2)
    assert shaper.suspended_until(rolled.site, first.until + 2) == later.until


def test_a_domain_with_its_own_limits_keeps_its_mx_site_and_its_providers_rules() -> None:
    settings = parse_settings({"limits": {"gmail.com": {"connections": 2}}}, "cfg.toml")
    shaper = Shaper(settings)
    own = shaper.route(route("gmail.com", "gmail-smtp-in.l.google.com"))
    shared = shaper.route(route("work.test", "aspmx.l.google.com"))
    assert own.site == "gmail-smtp-in.l.google.com" and shared.site == "provider:google"
    assert shaper.limits_for(own, 0.0).connections == 2
    assert shaper.limits_for(shared, 0.0).connections == 5
    action, new = shaper.observe(own.site, Reply(421, "unusual rate", "4.7.28"), 0.0)
    assert action is not None and new and action.rule == "google-4.7.28-rate-limited"


def test_a_providers_tls_rule_is_named_as_its_source_even_under_a_domain_override() -> None:
    settings = parse_settings({"limits": {"comcast.net": {"connections": 3}}}, "cfg.toml")
    comcast = shipped_pack().providers["comcast"]
    _, origin = effective_limits(settings, "comcast.net", comcast)
    assert "providers.toml" in origin["tls"] and 'limits."comcast.net"' in origin["connections"]
    _, plain = effective_limits(settings, "x.test", shipped_pack().providers["google"])
    assert plain["tls"] == "cfg.toml [sender] tls"


def test_a_domain_table_with_only_tls_keys_stays_on_its_providers_site() -> None:
    settings = parse_settings(
        {"limits": {"a.test": {"mta_sts": "off"}, "b.test": {"rate": 3}}}, "cfg.toml"
    )
    shaper = Shaper(settings)
    a = shaper.route(route("a.test", "aspmx.l.google.com"))
    b = shaper.route(route("b.test", "aspmx.l.google.com"))
    assert a.site == "provider:google" and b.site == "aspmx.l.google.com"
    assert shaper.limits_for(a, 0.0).connections == 5
    b_limits = shaper.limits_for(b, 0.0)  # key by key: its rate, Google's connections
    assert (b_limits.rate, b_limits.connections, b_limits.messages_per_connection) == (3.0, 5, 50)


def test_a_throttle_is_undone_in_four_steps_over_its_recovery_time() -> None:
    base = Limits(connections=9, messages_per_connection=50, rate=10.0)
    throttle = Action("s", "t", "throttle", 100.0, rate=2.0, connections=1, recover_until=140.0)
    at = {t: limits_under(base, [throttle], "s", t) for t in (99.0, 100.0, 114.0, 127.0, 139.0)}
    assert [(lim.rate, lim.connections) for lim in at.values()] == [
        (2.0, 1),  # in force
        (4.0, 3),  # a quarter undone
        (6.0, 5),
        (8.0, 7),
        (8.0, 7),
    ]
    assert limits_under(base, [throttle], "s", 140.0) is base  # over
    unlimited = limits_under(Limits(rate=0.0), [throttle], "s", 127.0)
    assert unlimited.rate == 2.0 * 2**3  # from an unlimited base: doubling each step


def test_a_suspended_site_resumes_on_one_connection_and_climbs_back() -> None:
    base = Limits(connections=5, messages_per_connection=50, rate=0.0)
    suspend = Action("s", "r", "suspend", 100.0, recover_until=200.0)
    assert limits_under(base, [suspend], "s", 50.0) is base  # suspended: nothing is sent
    assert suspended_until([suspend], "s", 50.0) == 100.0
    assert suspended_until([suspend], "s", 100.0) is None
    climb = [limits_under(base, [suspend], "s", t).connections for t in (100, 140, 170, 199)]
    assert climb == [2, 3, 4, 4]  # 1 + (5 - 1) x 1/4, 2/4, 3/4
    assert limits_under(base, [suspend], "s", 200.0) is base
    assert suspend.lasts(150.0) and not suspend.lasts(200.0)


def test_a_matching_reply_while_recovering_starts_the_rule_again() -> None:
    shaper = Shaper(parse_settings({}, "cfg.toml"))
    site = shaper.route(route("g.test", "aspmx.l.google.com")).site
    reply = Reply(421, "unusual rate", "4.7.28")
    first, _ = shaper.observe(site, reply, 0.0)
    assert first is not None and first.recover_until == first.until + 1800.0
    again, new = shaper.observe(site, reply, first.until + 60.0)  # recovering
    assert new and again is not None and again.until == first.until + 60.0 + 1800.0


def test_config_check_prints_provider_tables_that_load_back(tmp_path: Path) -> None:
    import tomllib

    from bulkmail.setup_config import effective, to_toml

    rules = tmp_path / "rules.toml"
    rules.write_text("", encoding="utf-8")
    data = {
        "limits": {"gmail.com": {"connections": 2}},
        "shaping": {"rules_file": str(rules)},
        "providers": {"google": {"connections": 3}, "fm": {"mx_suffixes": ["fm.test"]}},
    }
    settings = parse_settings(data, "cfg.toml")
    again = parse_settings(tomllib.loads(to_toml(effective(settings))), "shown")
    assert again.providers == settings.providers and again.shaping == settings.shaping
    assert again.limits == settings.limits
