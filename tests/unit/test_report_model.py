"""The arithmetic of campaign reports: medians from histograms, bucket widths, merging, picks."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkmail.errors import InputError
from bulkmail.reports.export import parse_since
from bulkmail.reports.model import (
    Bucket,
    Timeline,
    bucket_count,
    bucket_width,
    format_seconds,
    median_from_histogram,
    merge_buckets,
    pick_reply,
)


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=200))
def test_median_from_a_histogram_equals_the_median_of_the_values(values: list[int]) -> None:
    histogram: dict[int, int] = {}
    for v in values:
        histogram[v] = histogram.get(v, 0) + 1
    assert median_from_histogram(histogram) == statistics.median(values)


def test_median_of_nothing_is_none() -> None:
    assert median_from_histogram({}) is None
    assert median_from_histogram({3: 0}) is None


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (0.0, 1.0),
        (2.5, 1.0),
        (59.0, 1.0),
        (60.0, 2.0),
        (3600.0, 120.0),
        (4 * 86400.0, 7200.0),
    ],
)
def test_bucket_width_is_a_readable_step_that_fits_sixty_buckets(span: float, width: float) -> None:
    assert bucket_width(span, 60) == width


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_buckets_cover_the_span_in_at_most_the_maximum(span: float) -> None:
    width = bucket_width(span, 60)
    n = bucket_count(span, width, 60)
    assert 1 <= n <= 60
    assert int(span // width) < n  # the last outcome falls in the last bucket


def test_merging_buckets_keeps_every_count() -> None:
    series = ("sent", "bounced")
    buckets = [Bucket(float(i), {"sent": i, "bounced": 1}) for i in range(45)]
    merged = merge_buckets(Timeline(100.0, 1.0, series, buckets), 20)
    assert len(merged.buckets) <= 20
    assert merged.bucket_seconds == 3.0
    assert [b.start for b in merged.buckets[:3]] == [0.0, 3.0, 6.0]
    assert sum(b.counts["sent"] for b in merged.buckets) == sum(range(45))
    assert sum(b.counts["bounced"] for b in merged.buckets) == 45


def test_bucket_done_does_not_count_deferrals() -> None:
    assert Bucket(0.0, {"sent": 3, "deferred": 5, "bounced": 1}).done == 4


def test_most_common_reply_wins_and_ties_go_to_the_lower_code() -> None:
    rows = [(550, "5.1.1", "No such user", 3), (550, "5.7.1", "Policy", 1), (250, None, "OK", 3)]
    best = pick_reply(rows)
    assert best is not None
    assert (best.code, best.enhanced, best.count, str(best)) == (250, None, 3, "250 OK")
    assert str(pick_reply(rows[:2])) == "550 5.1.1 No such user"
    assert pick_reply([]) is None


def test_seconds_read_well() -> None:
    assert [format_seconds(x) for x in (None, 0.84, 42.0, 200.0, 7500.0)] == [
        "-",
        "0.8s",
        "42.0s",
        "3m20s",
        "2h5m",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2h", 1_000_000.0 - 7200),
        ("1h30m", 1_000_000.0 - 5400),
        ("1714554000", 1714554000.0),
        ("2024-05-01", 1714521600.0),
        ("2024-05-01T09:00", 1714554000.0),
        ("2024-05-01T11:00+02:00", 1714554000.0),
        ("2024-05-01T09:00Z", 1714554000.0),
    ],
)
def test_since_takes_a_duration_ago_a_date_or_unix_seconds(value: str, expected: float) -> None:
    assert parse_since(value, now=1_000_000.0) == expected


def test_since_that_means_nothing_is_an_input_error_naming_the_option() -> None:
    with pytest.raises(InputError, match="--since 'yesterday'"):
        parse_since("yesterday", now=0.0)
