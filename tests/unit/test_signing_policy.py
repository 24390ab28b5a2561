"""When mail may leave unsigned (bulkmail.signing.policy): a pure decision on the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulkmail.config import parse_settings
from bulkmail.errors import ConfigError
from bulkmail.signing.policy import require_signing, unsigned_refusal


def settings(**dkim: Any):  # type: ignore[no-untyped-def]
    return parse_settings({"dkim": dkim} if dkim else {}, "/etc/bulkmail.toml")


def test_no_key_is_refused_with_one_line_naming_the_file_and_the_fix() -> None:
    reason = unsigned_refusal(settings())
    assert reason is not None and "\n" not in reason
    assert reason.startswith("/etc/bulkmail.toml: [dkim]: no DKIM key configured")
    assert "bulkmail dkim keygen" in reason and "required = false" in reason
    with pytest.raises(ConfigError) as caught:
        require_signing(settings())
    assert str(caught.value) == reason and caught.value.exit_code == 2


@pytest.mark.parametrize(
    "dkim, unsigned",
    [
        ({"domain": "a.test", "selector": "s1", "key_file": "k.pem"}, False),
        ({"domain": "a.test", "ed25519_selector": "e1", "ed25519_key_file": "e.pem"}, False),
        ({"required": False}, False),
        ({}, True),
    ],
)
def test_a_key_an_explicit_opt_out_or_the_flag_allows_sending(
    dkim: dict[str, Any], unsigned: bool
) -> None:
    assert unsigned_refusal(settings(**dkim), unsigned=unsigned) is None
    require_signing(settings(**dkim), unsigned=unsigned)


def test_required_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="dkim.required: expected bool"):
        settings(required="no")


def test_a_key_file_that_is_no_key_is_named_in_the_one_line_error(tmp_path: Path) -> None:
    from bulkmail.delivery.pipeline import load_signers
    from bulkmail.errors import SigningError

    bad = tmp_path / "bad.pem"
    bad.write_text("x\n", encoding="ascii")
    conf = parse_settings(
        {"dkim": {"domain": "a.example", "selector": "s1", "key_file": str(bad)}}, "b"
    )
    with pytest.raises(SigningError) as caught:
        load_signers(conf)
    assert str(caught.value) == (
        f"dkim key {bad}: DKIM key cannot be loaded: not an unencrypted PEM private key"
    )
