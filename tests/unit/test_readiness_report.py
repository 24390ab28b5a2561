"""The readiness results, the providers' requirements decided from them, the pure checks
(alignment, unsubscribe URL, TLS policy) and how a report is shown — no network."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bulkmail.delivery.transport import Timeouts
from bulkmail.readiness.checker import Report
from bulkmail.readiness.dnschecks import check_alignment, check_tls_policy, check_unsubscribe
from bulkmail.readiness.report import render, report_json
from bulkmail.readiness.requirements import provider_verdicts, summarise
from bulkmail.readiness.results import CheckResult, exit_code, failed, passed, warned, worst
from bulkmail.readiness.rules import DmarcPolicy
from bulkmail.readiness.tlscheck import capped, parse_probe


def all_passing() -> list[CheckResult]:
    return [
        passed(kind, "x", "ok")
        for kind in ("ptr", "spf", "spf-helo", "dkim", "dmarc", "alignment", "tls", "unsubscribe")
    ]


def replace(results: list[CheckResult], new: CheckResult) -> list[CheckResult]:
    return [new if r.kind == new.kind else r for r in results]


# -- results ---------------------------------------------------------------------------------


def test_exit_code_is_1_only_when_something_fails() -> None:
    assert exit_code(all_passing()) == 0
    assert (
        exit_code(
            [
                *all_passing(),
                warned("ptr", "y", "ehlo differs"),
                CheckResult("dnsbl", "z", "inconclusive", "timeout"),
            ]
        )
        == 0
    )
    assert exit_code([*all_passing(), failed("dmarc", "d", "missing", "publish")]) == 1


def test_worst_status_orders_fail_inconclusive_warn_pass() -> None:
    assert worst(["pass", "warn", "inconclusive", "fail"]) == "fail"
    assert worst(["pass", "warn", "inconclusive"]) == "inconclusive"
    assert worst(["pass", "warn"]) == "warn"
    assert worst([]) == "pass"


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        CheckResult("ptr", "x", "listed", "no such status")


def test_json_rows_have_exactly_check_status_detail_remedy() -> None:
    report = Report([failed("dmarc", "example.com", "no record", "_dmarc.example.com. IN TXT")])
    assert report_json(report) == [
        {
            "check": "dmarc example.com",
            "status": "fail",
            "detail": "no record",
            "remedy": "_dmarc.example.com. IN TXT",
        }
    ]


# -- requirements ----------------------------------------------------------------------------


def test_every_requirement_is_met_when_every_check_passes() -> None:
    verdicts = summarise(all_passing())
    assert {v.status for v in verdicts} == {"pass"}
    assert [p.status for p in provider_verdicts(verdicts)] == ["pass", "pass", "pass"]


def test_a_warning_still_meets_its_requirement() -> None:
    verdicts = summarise(replace(all_passing(), warned("dkim", "x", "1024 bits")))
    assert {v.status for v in verdicts} == {"pass"}


def test_failing_ptr_fails_gmail_and_yahoo_but_not_outlook() -> None:
    results = replace(all_passing(), failed("ptr", "x", "no PTR", "ask"))
    by_provider = {p.subject: p for p in provider_verdicts(summarise(results))}
    assert by_provider["Gmail"].status == "fail"
    assert "Forward-confirmed reverse DNS" in by_provider["Gmail"].detail
    assert by_provider["Yahoo"].status == "fail"
    assert by_provider["Outlook.com"].status == "pass"


def test_a_requirement_nobody_checked_is_unknown() -> None:
    results = [r for r in all_passing() if r.kind != "tls"]
    verdicts = {v.name: v.status for v in summarise(results)}
    assert verdicts["TLS for transmission"] == "inconclusive"
    by_provider = {p.subject: p.status for p in provider_verdicts(summarise(results))}
    assert by_provider == {"Gmail": "inconclusive", "Yahoo": "pass", "Outlook.com": "pass"}


def test_helo_spf_does_not_decide_the_providers_spf_requirement() -> None:
    results = replace(all_passing(), failed("spf-helo", "x", "fail", "publish"))
    assert {v.name: v.status for v in summarise(results)}[
        "SPF passes for every sending IP"
    ] == "pass"


# -- pure checks -----------------------------------------------------------------------------


def test_alignment_through_dkim_or_the_return_path() -> None:
    assert (
        check_alignment("news.example.com", "example.com", "bounces.other.net", None).status
        == "pass"
    )
    assert check_alignment("example.com", "", "bounces.example.com", None).status == "pass"
    strict = DmarcPolicy("none", adkim="s", aspf="s")
    result = check_alignment("news.example.com", "example.com", "bounces.example.com", strict)
    assert result.status == "fail"
    assert '[dkim] domain = "example.com"' in result.remedy


def test_unsubscribe_over_plain_http_fails_with_the_setting() -> None:
    result = check_unsubscribe("http://localhost:8080/unsubscribe")
    assert result.status == "fail" and "[unsubscribe] url" in result.remedy
    assert check_unsubscribe("https://news.example.com/u").status == "pass"


def test_tls_turned_off_fails_gmail_rule() -> None:
    assert check_tls_policy("off").status == "fail"
    assert check_tls_policy("opportunistic").status == "pass"


@pytest.mark.parametrize(
    "target, expected",
    [
        ("mx.example.com", ("mx.example.com", 25)),
        ("mx.example.com:2525", ("mx.example.com", 2525)),
        ("[2001:db8::25]:587", ("2001:db8::25", 587)),
        ("2001:db8::25", ("2001:db8::25", 25)),
    ],
)
def test_probe_targets(target: str, expected: tuple[str, int]) -> None:
    assert parse_probe(target, 25) == expected


@pytest.mark.parametrize("target", ["mx.example.com:0", "mx.example.com:x", ":25"])
def test_bad_probe_targets_are_refused(target: str) -> None:
    with pytest.raises(ValueError):
        parse_probe(target, 25)


def test_check_timeouts_are_capped() -> None:
    capped_values = capped(Timeouts(connect=5, greeting=300, data_end=600), cap=30)
    assert (capped_values.connect, capped_values.greeting, capped_values.data_end) == (5, 30, 30)


# -- rendering -------------------------------------------------------------------------------


def render_text(report: Report) -> str:
    out = io.StringIO()
    render(report, Console(file=out, width=80, color_system=None))
    return out.getvalue()


def test_remedies_are_printed_whole_and_as_text_not_markup() -> None:
    long_record = 's1._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=' + "A" * 300 + '"'
    results = [
        failed("dkim", "s1._domainkey.example.com", "no record", long_record),
        warned("ptr", "192.0.2.1", "EHLO differs", '[sender] helo = "mail.example.com"'),
    ]
    report = Report(results, summarise(results), provider_verdicts(summarise(results)))

    text = render_text(report)

    assert long_record in text  # not wrapped, so it can be pasted
    assert '[sender] helo = "mail.example.com"' in text  # not swallowed as a style
    assert "Bulk-sender requirements" in text and "NOT MET" in text
    assert "Gmail: NOT MET" in text


def test_passing_checks_have_no_to_do_section() -> None:
    results = all_passing()
    text = render_text(Report(results, summarise(results), provider_verdicts(summarise(results))))
    assert "To do:" not in text
    assert "Gmail: met" in text


def test_a_failing_provider_line_points_at_the_failing_checks_remedy() -> None:
    remedy = 'bounces.example.com. IN TXT "v=spf1 ip4:192.0.2.1 -all"'
    results = replace(
        all_passing(), failed("spf", "bounces.example.com 192.0.2.1", "SPF fail", remedy)
    )
    by_provider = {p.subject: p for p in provider_verdicts(summarise(results))}
    gmail = by_provider["Gmail"]
    assert "SPF passes for every sending IP (to do: spf bounces.example.com 192.0.2.1)" in (
        gmail.detail
    )
    assert gmail.remedy == f"spf bounces.example.com 192.0.2.1: {remedy}"
    text = render_text(Report(results, summarise(results), provider_verdicts(summarise(results))))
    assert "To do:" in text and remedy in text
    gmail_line = next(line for line in text.splitlines() if line.startswith("Gmail:"))
    assert "to do: spf bounces.example.com 192.0.2.1" in gmail_line


def test_an_unchecked_requirement_says_so_and_a_met_one_has_no_remedy() -> None:
    results = [r for r in all_passing() if r.kind != "tls"]
    by_provider = {p.subject: p for p in provider_verdicts(summarise(results))}
    assert "TLS for transmission (not checked)" in by_provider["Gmail"].detail
    assert by_provider["Yahoo"].remedy == ""
