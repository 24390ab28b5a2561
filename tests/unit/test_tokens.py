"""Delivery tokens, VERP addresses and Message-IDs (bulkmail.compose.tokens)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkmail.compose.tokens import make_token, message_id, parse_token, parse_verp, verp_address

SECRET = b"test-secret-0123456789abcdef"
IDS = [(0, 0), (1, 1), (7, 123456), (2**31, 99), (2**63 - 1, 2**63 - 1)]


@pytest.mark.parametrize(("campaign_id", "subscriber_id"), IDS)
def test_token_round_trips(campaign_id: int, subscriber_id: int) -> None:
    token = make_token(SECRET, campaign_id, subscriber_id)
    assert parse_token(SECRET, token) == (campaign_id, subscriber_id)


@pytest.mark.parametrize(("campaign_id", "subscriber_id"), IDS)
def test_token_is_url_and_local_part_safe_lowercase(campaign_id: int, subscriber_id: int) -> None:
    token = make_token(SECRET, campaign_id, subscriber_id)
    assert re.fullmatch(r"[0-9a-z]+(-[0-9a-z]+)*", token)
    assert len(token) <= 48


def test_token_survives_an_mta_changing_case() -> None:
    token = make_token(SECRET, 12, 345)
    assert parse_token(SECRET, token.upper()) == (12, 345)


def test_token_mac_has_at_least_64_bits() -> None:
    mac = make_token(SECRET, 1, 2).rsplit("-", 1)[1]
    assert len(mac) * 5 >= 64  # base32: 5 bits per character


def test_token_differs_per_delivery_and_secret() -> None:
    tokens = {make_token(SECRET, c, s) for c in range(5) for s in range(5)}
    assert len(tokens) == 25
    assert make_token(b"another-secret-0123456789", 1, 2) != make_token(SECRET, 1, 2)


def test_token_from_another_secret_is_rejected() -> None:
    assert parse_token(b"another-secret-0123456789", make_token(SECRET, 1, 2)) is None


def test_token_with_changed_ids_is_rejected() -> None:
    _, _, mac = make_token(SECRET, 1, 2).split("-")
    assert parse_token(SECRET, f"1-3-{mac}") is None
    assert parse_token(SECRET, f"2-2-{mac}") is None


def test_token_with_any_changed_mac_character_is_rejected() -> None:
    token = make_token(SECRET, 5, 6)
    head, mac = token.rsplit("-", 1)
    for i, char in enumerate(mac):
        other = "a" if char != "a" else "b"
        assert parse_token(SECRET, f"{head}-{mac[:i]}{other}{mac[i + 1 :]}") is None


def test_truncated_or_extended_token_is_rejected() -> None:
    token = make_token(SECRET, 5, 6)
    for cut in range(len(token)):
        assert parse_token(SECRET, token[:cut]) is None
    assert parse_token(SECRET, token + "a") is None
    assert parse_token(SECRET, " " + token) is None


def test_non_canonical_ids_are_rejected() -> None:
    token = make_token(SECRET, 5, 6)
    assert parse_token(SECRET, "0" + token) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "-", "--", "a-b-c", "x" * 10_000, "1-2-" + "=" * 16, "\x00", "１-２-aaaaaaaaaaaaaaaa"],
)
def test_garbage_is_not_a_token(garbage: str) -> None:
    assert parse_token(SECRET, garbage) is None


def test_non_ascii_lookalike_of_a_valid_token_is_rejected() -> None:
    token = make_token(SECRET, 20, 20)  # "k" in base36
    assert "k" in token
    assert parse_token(SECRET, token.replace("k", "\u212a")) is None  # KELVIN SIGN lowercases to k


def test_non_string_is_not_a_token() -> None:
    assert parse_token(SECRET, None) is None  # type: ignore[arg-type]
    assert parse_token(SECRET, b"1-2-3") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, True])
def test_make_token_refuses_ids_out_of_range(bad: object) -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, bad, 1)  # type: ignore[arg-type]


def test_verp_address_round_trips() -> None:
    address = verp_address(make_token(SECRET, 9, 10), "bounces.example.com")
    assert address.startswith("bounces+") and address.endswith("@bounces.example.com")
    assert parse_verp(address, SECRET) == (9, 10)
    assert parse_verp(f"<{address}>", SECRET) == (9, 10)
    assert parse_verp(address.upper(), SECRET) == (9, 10)


@pytest.mark.parametrize(
    "address",
    [
        "bounces@example.com",
        "bounces+@example.com",
        "bounces+1-2-aaaaaaaaaaaaaaaa@example.com",
        "nonsense",
        "",
    ],
)
def test_verp_without_a_valid_token_is_none(address: str) -> None:
    assert parse_verp(address, SECRET) is None


def test_message_id_is_stable_and_per_delivery() -> None:
    first = message_id(SECRET, 3, 4, "mail.example.com")
    assert first == message_id(SECRET, 3, 4, "mail.example.com")
    assert first != message_id(SECRET, 3, 5, "mail.example.com")
    assert first != message_id(SECRET, 4, 4, "mail.example.com")
    assert re.fullmatch(r"<[0-9a-z.]+@mail\.example\.com>", first)


def test_message_id_does_not_reveal_the_token() -> None:
    token = make_token(SECRET, 3, 4)
    assert token.rsplit("-", 1)[1] not in message_id(SECRET, 3, 4, "example.com")


def test_tokens_and_message_ids_are_the_ones_already_sent() -> None:
    """Pinned values: tokens in mail already delivered must keep parsing, IDs keep matching."""
    secret = b"pinned-secret-0123456789"
    assert make_token(secret, 42, 123456789) == "16-21i3v9-7mqrncjhvdvoq4gl"
    assert message_id(secret, 42, 0, "example.com") == "<16.0.bwn2dbopdobnznn3@example.com>"


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.binary(min_size=16, max_size=40))
def test_token_mac_is_base32_of_the_first_80_bits_of_hmac_sha256(
    campaign_id: int, subscriber_id: int, secret: bytes
) -> None:
    import base64
    import hashlib
    import hmac

    msg = b"bulkmail:token:%d:%d" % (campaign_id, subscriber_id)
    mac = base64.b32encode(hmac.new(secret, msg, hashlib.sha256).digest()[:10]).decode().lower()
    assert make_token(secret, campaign_id, subscriber_id).rpartition("-")[2] == mac
