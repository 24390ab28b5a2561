"""RateLimiter (GCRA) under a fake clock: exact long-run rate, bounded bursts."""

from __future__ import annotations

import pytest

from bulkmail.delivery.throttle import RateLimiter, parse_rate
from bulkmail.errors import InputError


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def send_all(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    """A greedy sender: reserve, sleep the wait, send. Returns the send times."""
    times = []
    for _ in range(count):
        clock.advance(limiter.reserve())
        times.append(clock.now)
    return times


def test_the_long_run_rate_is_exact() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=7.0, burst=5, clock=clock)
    times = send_all(limiter, clock, 10_005)
    # 5 go at once, then exactly one every 1/7 s.
    assert times[4] == times[0]
    assert times[-1] - times[4] == pytest.approx(10_000 / 7.0, abs=1e-6)


def test_a_burst_is_bounded_by_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=3, clock=clock)
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_no_window_holds_more_than_burst_plus_rate_times_length() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10.0, burst=4, clock=clock)
    times = send_all(limiter, clock, 500)
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 1.0)
        assert in_window <= 4 + 10


def test_idle_time_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    send_all(limiter, clock, 10)
    clock.advance(3600)
    waits = [limiter.reserve() for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, 0.5]


def test_delay_looks_without_booking() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, clock=clock)
    assert limiter.delay() == 0.0
    assert limiter.reserve() == 0.0
    assert limiter.delay() == 1.0
    assert limiter.delay() == 1.0
    clock.advance(0.25)
    assert limiter.delay() == 0.75


def test_try_take_books_only_when_free() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, clock=clock)
    assert limiter.try_take() is True
    assert limiter.try_take() is False
    assert limiter.delay() == 1.0
    clock.advance(1.0)
    assert limiter.try_take() is True


def test_rate_zero_is_unlimited() -> None:
    limiter = RateLimiter(rate=0, clock=FakeClock())
    assert [limiter.reserve() for _ in range(1000)] == [0.0] * 1000
    assert limiter.delay() == 0.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=-1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


@pytest.mark.parametrize(
    "text, per_second",
    [
        ("10/s", 10.0),
        ("600/min", 10.0),
        ("360/h", 0.1),
        ("8640/day", 0.1),
        ("2.5", 2.5),
        ("0", 0.0),
        (5, 5.0),
        ("120 / minute", 2.0),
    ],
)
def test_parse_rate_reads_per_unit_rates(text: str | int, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("junk", ["fast", "10/fortnight", "-1", "/s", ""])
def test_parse_rate_rejects_junk(junk: str) -> None:
    with pytest.raises(InputError, match="invalid rate"):
        parse_rate(junk)
