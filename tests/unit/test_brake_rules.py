"""List-health brakes as pure rules: the levels shown, the line a person reads, the columns
of ``campaigns list``, and how often a sending engine checks them."""

from __future__ import annotations

from bulkmail.bounces.brakes import (
    CHECK_SECONDS,
    Brakes,
    Health,
    Watch,
    brake,
    describe,
    figures,
    marked,
)


def test_levels_follow_the_warning_level_and_the_brake() -> None:
    b = Brakes()
    ok = figures(Health(2000, 2000, 1, 20), b)  # 0.05% complaints, 1% hard bounces
    assert (ok["complaint_level"], ok["bounce_level"]) == ("ok", "ok")
    warn = figures(Health(2000, 2000, 2, 40), b)  # 0.1% and 2%: the warning levels
    assert (warn["complaint_level"], warn["bounce_level"]) == ("warning", "warning")
    limit = figures(Health(2000, 2000, 6, 100), b)  # 0.3% and 5%: the brakes
    assert (limit["complaint_level"], limit["bounce_level"]) == ("brake", "brake")
    assert brake(Health(2000, 2000, 6, 100), b) is not None


def test_a_brake_set_to_zero_is_off_and_says_so() -> None:
    f = figures(Health(10, 10, 5, 5), Brakes(complaint_rate=0, bounce_rate=0))
    assert (f["complaint_level"], f["bounce_level"]) == ("warning", "warning")
    assert describe(f) == (
        "complaints 50.00% (5 of 10 delivered): WARNING (warn 0.10%); "
        "hard bounces 50.00% (5 of 10 attempted): WARNING (warn 2.00%)"
    )
    assert brake(Health(2000, 2000, 1000, 1000), Brakes(complaint_rate=0, bounce_rate=0)) is None


def test_the_line_names_the_sample_the_brake_waits_for() -> None:
    line = describe(figures(Health(9, 10, 1, 0), Brakes()))
    assert line == (
        "complaints 11.11% (1 of 9 delivered): AT THE BRAKE (warn 0.10%, brake 0.30% from "
        "1,000 delivered); hard bounces 0.00% (0 of 10 attempted): ok (warn 2.00%, brake "
        "5.00% from 1,000 attempted)"
    )


def test_list_marks() -> None:
    assert (marked(0.0012, "ok"), marked(0.0012, "warning"), marked(0.004, "brake")) == (
        "0.12%",
        "0.12%!",
        "0.40%!!",
    )


def test_the_watch_waits_its_period_and_longer_when_counting_is_slow() -> None:
    w = Watch(Brakes())
    start = w.last
    assert not w.due(start + CHECK_SECONDS / 2)
    assert w.due(start + CHECK_SECONDS)
    assert not w.due(start + CHECK_SECONDS + 0.1)  # once per period
    w.period = 40.0  # the last check took 2 s: 1/20 of the time at most
    assert not w.due(start + CHECK_SECONDS * 2 + 0.1)
    assert w.due(start + CHECK_SECONDS + 40.0)
