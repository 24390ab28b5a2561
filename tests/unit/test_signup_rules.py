"""Sign-up tokens and the per-IP rate limiter (pure)."""

from __future__ import annotations

from bulkmail.audience.signup import SignupRequest, make_token, read_token
from bulkmail.web.signup import RateLimiter

SECRET = b"signup-secret-0123456789"
REQ = SignupRequest(3, "zoë@example.org", "Zoë", 1_700_000_000)


def test_a_token_carries_its_request_back() -> None:
    token = make_token(SECRET, REQ)
    assert read_token(SECRET, token, now=REQ.issued_at + 10, max_age=3600) == REQ
    assert "@" not in token and "/" not in token  # safe in a URL path


def test_a_token_expires_and_cannot_come_from_the_future() -> None:
    token = make_token(SECRET, REQ)
    assert read_token(SECRET, token, now=REQ.issued_at + 3601, max_age=3600) is None
    assert read_token(SECRET, token, now=REQ.issued_at - 3600, max_age=3600) is None


def test_a_changed_or_foreign_token_is_refused() -> None:
    token = make_token(SECRET, REQ)
    payload, mac = token.split(".")
    other = make_token(SECRET, SignupRequest(4, REQ.email, REQ.name, REQ.issued_at))
    assert read_token(SECRET, f"{other.split('.')[0]}.{mac}", REQ.issued_at, 3600) is None
    assert read_token(b"another-secret-00000000", token, REQ.issued_at, 3600) is None
    assert read_token(SECRET, payload, REQ.issued_at, 3600) is None
    assert read_token(SECRET, token[:-2], REQ.issued_at, 3600) is None
    assert read_token(SECRET, "", REQ.issued_at, 3600) is None


def test_the_rate_limiter_allows_limit_hits_per_window_per_key() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60.0, clock=lambda: now[0])
    assert [limiter.allow("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert limiter.allow("10.0.0.2")  # another client is not affected
    now[0] = 59.9
    assert not limiter.allow("10.0.0.1")
    now[0] = 60.0  # the first two hits left the window
    assert limiter.allow("10.0.0.1") and limiter.allow("10.0.0.1")
    assert not limiter.allow("10.0.0.1")


def test_a_signup_url_needs_a_from_address_and_http() -> None:
    import pytest

    from bulkmail.config import parse_settings
    from bulkmail.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^t.toml: signup.from_address: required"):
        parse_settings({"signup": {"url": "https://n.example/subscribe"}}, "t.toml")
    with pytest.raises(ConfigError, match=r"^t.toml: signup.url: not an http\(s\) URL"):
        parse_settings({"signup": {"url": "n.example/s", "from_address": "a@b.c"}}, "t.toml")
    ok = parse_settings(
        {"signup": {"url": "https://n.example/s", "from_address": "N <a@b.c>", "rate_limit": 2}},
        "t.toml",
    )
    assert (ok.signup.rate_limit, ok.signup.confirm_within) == (2, 604800.0)
