"""Address validation and normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkmail.audience.addresses import InvalidAddress, normalize_address


@pytest.mark.parametrize(
    ("raw", "email", "smtputf8"),
    [
        ("Bob@Example.COM", "Bob@example.com", False),
        ("  alice@example.com ", "alice@example.com", False),
        ("x@bücher.de", "x@xn--bcher-kva.de", False),
        ("josé@bücher.de", "josé@xn--bcher-kva.de", True),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org", False),
        ("user@demo.test", "user@demo.test", False),
    ],
)
def test_valid_addresses_are_normalised(raw: str, email: str, smtputf8: bool) -> None:
    addr = normalize_address(raw)
    assert addr.email == email
    assert addr.domain == email.rpartition("@")[2]
    assert addr.smtputf8 is smtputf8


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plainaddress",
        "a@b",
        "a..b@example.com",
        "a@-example.com",
        ".a@example.com",
        "a@example..com",
        "a b@example.com",
        "a@example.invalid",
        "a@printer.local",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "a@example.com\r\nBcc: x@y.com",
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidAddress) as err:
        normalize_address(raw)
    assert str(err.value)


@given(st.text(max_size=80))
def test_normalising_never_raises_anything_but_invalid_address(raw: str) -> None:
    try:
        addr = normalize_address(raw)
    except InvalidAddress:
        return
    assert "\r" not in addr.email and "\n" not in addr.email
    assert len(addr.email.encode()) <= 254
    assert addr.domain == addr.domain.lower() and addr.domain.isascii()
