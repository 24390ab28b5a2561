"""Address validation and normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkmail.audience.addresses import InvalidAddress, address_key, normalize_address


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


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("USER20@GOOD.TEST", "user20@good.test"),
        ("Mixed.Case@good.test", "mixed.case@GOOD.test"),
        ("Ann@BÜCHER.de", "ann@xn--bcher-kva.de"),
        ("JOSÉ@bücher.de", "josé@XN--BCHER-KVA.DE"),
    ],
)
def test_spellings_of_one_address_share_a_key(one: str, other: str) -> None:
    assert normalize_address(one).key == normalize_address(other).key
    assert normalize_address(one).key == address_key(normalize_address(one).email)


def test_the_key_is_lower_case_but_the_address_is_kept_as_given() -> None:
    addr = normalize_address("Mixed.Case@Good.Test")
    assert (addr.email, addr.key) == ("Mixed.Case@good.test", "mixed.case@good.test")
    assert address_key("x@BÜCHER.de") == "x@xn--bcher-kva.de"  # a stored Unicode domain


def test_different_addresses_keep_different_keys() -> None:
    assert normalize_address("ann@x.test").key != normalize_address("anne@x.test").key
