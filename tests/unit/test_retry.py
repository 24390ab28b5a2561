"""Retry arithmetic: durations, the interval schedule, jitter, server hints and expiry."""

from __future__ import annotations

import random

import pytest

from bulkmail.delivery.retry import (
    DurationError,
    format_duration,
    next_attempt_at,
    parse_duration,
)
from bulkmail.errors import InputError

MIN, HOUR, DAY = 60.0, 3600.0, 86400.0
INTERVALS = (30 * MIN, HOUR, 2 * HOUR)


class FixedRng:
    """uniform() returns one end of the range: "low", "high" or the middle."""

    def __init__(self, where: str) -> None:
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return {"low": a, "high": b, "mid": (a + b) / 2}[self.where]


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("2s", 2.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("90", 90.0),
        (" 4D ", 4 * DAY),
        ("0s", 0.0),
    ],
)
def test_parse_duration_reads_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_accepts_numbers_as_seconds() -> None:
    assert parse_duration(1800) == 1800.0
    assert parse_duration(2.5) == 2.5


@pytest.mark.parametrize("junk", ["", "m", "30x", "1h-5m", "-5m", "h1", "30 minutes", "nan"])
def test_parse_duration_rejects_junk_with_a_clear_message(junk: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(junk)


def test_duration_error_is_both_an_input_error_and_a_value_error() -> None:
    with pytest.raises(InputError):
        parse_duration("soon")
    with pytest.raises(ValueError):
        parse_duration(-1)
    with pytest.raises(ValueError):
        parse_duration(True)


def test_format_duration_round_trips_parse_duration() -> None:
    for text in ("1h30m", "4d", "45s", "1d2h3m4s"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(0) == "0s"


def test_the_nth_attempt_waits_the_nth_interval() -> None:
    rng = FixedRng("mid")
    for attempts, interval in ((1, 30 * MIN), (2, HOUR), (3, 2 * HOUR)):
        at = next_attempt_at(1000.0, attempts, 1000.0, INTERVALS, 5 * DAY, rng=rng)
        assert at == pytest.approx(1000.0 + interval)


def test_the_last_interval_repeats() -> None:
    at = next_attempt_at(0.0, 9, 0.0, INTERVALS, 5 * DAY, jitter=0)
    assert at == 2 * HOUR


def test_attempts_below_one_use_the_first_interval() -> None:
    assert next_attempt_at(0.0, 0, 0.0, INTERVALS, DAY, jitter=0) == 30 * MIN


def test_jitter_stays_within_the_fraction_and_varies() -> None:
    low = next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, jitter=0.1, rng=FixedRng("low"))
    high = next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, jitter=0.1, rng=FixedRng("high"))
    assert (low, high) == (pytest.approx(27 * MIN), pytest.approx(33 * MIN))
    rng = random.Random(7)
    seen = {next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, rng=rng) for _ in range(50)}
    assert len(seen) > 40
    assert all(27 * MIN <= s <= 33 * MIN for s in seen if s is not None)


def test_the_servers_hint_is_a_minimum() -> None:
    at = next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, hint=2 * HOUR, rng=FixedRng("high"))
    assert at == 2 * HOUR
    short = next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, hint=60.0, rng=FixedRng("low"))
    assert short == pytest.approx(27 * MIN)


def test_none_when_the_next_attempt_would_be_past_the_maximum_age() -> None:
    first = 1000.0
    now = first + 5 * DAY - HOUR
    assert next_attempt_at(now, 40, first, INTERVALS, 5 * DAY, jitter=0) is None
    assert next_attempt_at(now, 2, first, INTERVALS, 5 * DAY, jitter=0) == first + 5 * DAY


def test_a_hint_beyond_the_maximum_age_expires_the_delivery() -> None:
    assert next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, hint=2 * DAY) is None


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError):
        next_attempt_at(0.0, 1, 0.0, (), DAY)
    with pytest.raises(ValueError):
        next_attempt_at(0.0, 1, 0.0, INTERVALS, DAY, jitter=1.5)
