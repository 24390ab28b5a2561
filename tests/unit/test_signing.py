"""DKIM signing: every signature bulkmail makes must verify with dkimpy, and tampering must not."""

from __future__ import annotations

import base64
import functools
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.canonicalization import Relaxed
from dkim.util import parse_tag_value
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkmail.errors import SigningError
from bulkmail.signing import (
    OVERSIGNED,
    DkimSigner,
    dns_txt_value,
    generate_private_key,
    key_bits,
    load_private_key,
    public_key_matches,
    sign_all,
    split_txt,
)
from bulkmail.signing.dkim import body_hash

DOMAIN = "example.com"

MESSAGE = (
    b"Return-Path: <bounce+123@example.com>\r\n"
    b"Received: from localhost by mx.example.com; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"From: News <news@example.com>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: Weekly news\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <1.abc@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"List-Unsubscribe: <https://example.com/u/tok>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Campaign: 42\r\n"
    b"\r\n"
    b"Hello reader,\r\n"
    b"\r\n"
    b"this is the news.\r\n"
)


@functools.cache
def pem(kind: str) -> bytes:
    if kind == "ed25519":
        return generate_private_key("ed25519")
    return generate_private_key("rsa", int(kind.removeprefix("rsa")))


def signer(kind: str, selector: str | None = None, **kwargs) -> DkimSigner:
    return DkimSigner(pem(kind), DOMAIN, selector or f"sel-{kind}", **kwargs)


def dnsfunc_for(*kinds: str):
    """A dkimpy dnsfunc answering for the selectors of these keys (sel-<kind>)."""
    records = {
        f"sel-{k}._domainkey.{DOMAIN}.".encode(): dns_txt_value(load_private_key(pem(k))).encode()
        for k in kinds
    }

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc


def verifies(message: bytes, kind: str, idx: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc_for(kind)))
    except dkim.DKIMException:
        return False


def tags(signed: bytes) -> dict[bytes, bytes]:
    header_value = signed.split(b"\r\n\r\n", 1)[0]
    sig = re.match(rb"DKIM-Signature:(.*?\r\n)(?=\S)", header_value + b"\r\nX", re.S)
    assert sig is not None
    return parse_tag_value(sig.group(1))


def h_list(signed: bytes) -> list[str]:
    return [n.decode() for n in re.split(rb"\s*:\s*", tags(signed)[b"h"])]


def insert_header(message: bytes, line: bytes, at: str) -> bytes:
    if at == "top":
        return line + message
    head, body = message.split(b"\r\n\r\n", 1)
    return head + b"\r\n" + line.rstrip(b"\r\n") + b"\r\n\r\n" + body


# cryptography refuses to generate keys this small; `openssl genrsa 512` made this one.
RSA_512_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA6bKxIMNGeiEEd24y
ESI4VYVgA2bxN20vSxAKUIafrPIBlcwcU6K3pzpzPh57qxh+u/rmNMMdgwg8pxxn
eFa5tQIDAQABAkEA2khcBfwfsidw4pT9Et/huo/PtJ3MpTbIu9YJrFlyf7fq3Sn3
2DjIaeJp01JFo9LL7aaNimJdPhINEzxQDPSgaQIhAP4OM9pCnIpdV8yE8ceDk09p
Qvulg/6ytWbpFDIR7uDTAiEA63yZ0WSWVFrCugmC6raHHjVTMNbTsYSsWeGfteRz
JlcCIAqBX9eIpZx7G6RTYwQTBsZj3ec2Au1HSoUE4lbnsu8NAiBNbfnxxN49PF6c
5zW50WyaPTRucaTH0PUO1MY7+7L1HwIhAPgp2eXLGQJ4WWxkMGv+/B8d3RT6Zf5g
Ng2FLVsvDVbD
-----END PRIVATE KEY-----
"""

KINDS = ["rsa2048", "rsa1024", "ed25519"]


@pytest.mark.parametrize("kind", KINDS)
def test_signature_verifies_with_dkimpy(kind):
    signed = signer(kind).sign(MESSAGE)
    assert dkim.verify(signed, dnsfunc=dnsfunc_for(kind))


@pytest.mark.parametrize(
    ("kind", "algorithm"), [("rsa2048", "rsa-sha256"), ("ed25519", "ed25519-sha256")]
)
def test_tags_are_relaxed_relaxed_without_length(kind, algorithm):
    s = signer(kind)
    signed = s.signature_header(MESSAGE, timestamp=1700000000) + MESSAGE
    t = tags(signed)
    assert s.algorithm == algorithm
    assert t[b"a"] == algorithm.encode()
    assert t[b"c"] == b"relaxed/relaxed"
    assert t[b"d"] == b"example.com"
    assert t[b"s"] == f"sel-{kind}".encode()
    assert t[b"t"] == b"1700000000"
    assert b"l" not in t
    assert verifies(signed, kind)


def test_header_list_signs_present_headers_and_oversigns():
    signed = signer("ed25519").sign(MESSAGE)
    assert h_list(signed) == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
        *OVERSIGNED,
    ]


def test_absent_headers_are_listed_only_when_oversigned():
    msg = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    names = h_list(signer("ed25519").sign(msg))
    assert "reply-to" not in names and "feedback-id" not in names and "to" in names
    assert names.count("from") == 2 and names.count("subject") == 2
    assert names.count("to") == 1 and names.count("list-unsubscribe") == 1


def test_repeated_header_is_listed_per_occurrence_plus_one():
    msg = b"From: a@example.com\r\nTo: b@example.org\r\nTo: c@example.org\r\n\r\nbody\r\n"
    signed = signer("ed25519").sign(msg)
    assert h_list(signed).count("to") == 3
    assert verifies(signed, "ed25519")
    # The bottom-up rule: swapping the two To headers changes what is signed.
    swapped = signed.replace(
        b"To: b@example.org\r\nTo: c@example.org", b"To: c@example.org\r\nTo: b@example.org"
    )
    assert swapped != signed
    assert not verifies(swapped, "ed25519")


def test_return_path_and_received_are_never_signed():
    names = h_list(signer("ed25519").sign(MESSAGE))
    assert "return-path" not in names and "received" not in names
    with pytest.raises(SigningError, match="Received"):
        signer("ed25519", headers=("from", "Received"))
    with pytest.raises(SigningError, match="not a header field name"):
        signer("ed25519", headers=("from", "x:y"))


def test_from_is_always_signed_even_if_not_configured():
    names = h_list(signer("ed25519", headers=("subject",), oversign=()).sign(MESSAGE))
    assert names == ["subject", "from"]


@pytest.mark.parametrize("at", ["top", "bottom"])
@pytest.mark.parametrize(
    "line",
    [
        b"Subject: Win a prize\r\n",
        b"From: Mallory <mallory@example.net>\r\n",
        b"List-Unsubscribe: <https://evil.example/u>\r\n",
        b"To: x@example.net\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    ],
)
@pytest.mark.parametrize("kind", ["rsa2048", "ed25519"])
def test_added_copy_of_oversigned_header_fails(kind, line, at):
    signed = signer(kind).sign(MESSAGE)
    assert verifies(signed, kind)
    assert not verifies(insert_header(signed, line, at), kind)


@pytest.mark.parametrize("line", [b"X-Spam-Score: 0\r\n", b"Received: from relay\r\n"])
def test_added_unsigned_header_still_verifies(line):
    signed = signer("ed25519").sign(MESSAGE)
    assert verifies(insert_header(signed, line, "top"), "ed25519")
    assert verifies(insert_header(signed, line, "bottom"), "ed25519")


def test_adding_absent_oversigned_header_fails():
    msg = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    signed = signer("ed25519").sign(msg)
    assert verifies(signed, "ed25519")
    assert not verifies(
        insert_header(signed, b"List-Unsubscribe: <mailto:x@y>\r\n", "bottom"), "ed25519"
    )


@pytest.mark.parametrize("kind", ["rsa2048", "ed25519"])
def test_altered_body_fails(kind):
    signed = signer(kind).sign(MESSAGE)
    assert not verifies(signed.replace(b"the news", b"the nevs"), kind)
    assert not verifies(signed + b"appended line\r\n", kind)


@pytest.mark.parametrize("kind", ["rsa2048", "ed25519"])
def test_altered_header_fails(kind):
    signed = signer(kind).sign(MESSAGE)
    assert not verifies(signed.replace(b"Weekly news", b"Weekly nevs"), kind)
    assert not verifies(signed.replace(b"news@example.com", b"ceo@example.com"), kind)


def test_whitespace_changes_in_transit_still_verify():
    """Relaxed canonicalisation: refolding headers and trailing spaces must not matter."""
    signed = signer("rsa2048").sign(MESSAGE)
    refolded = signed.replace(b"Subject: Weekly news", b"Subject:   Weekly\r\n\t  news  ").replace(
        b"this is the news.\r\n", b"this  is the\tnews. \t\r\n\r\n\r\n"
    )
    assert verifies(refolded, "rsa2048")


def test_folded_and_oddly_spaced_headers_verify():
    msg = (
        b"From:News\t<news@example.com>   \r\n"
        b"To: a@example.org,\r\n   b@example.org,\r\n\tc@example.org\r\n"
        b"subject:   lots    of\t\tspace   \r\n"
        b"DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b'Content-Type: multipart/alternative;\r\n boundary="b1"\r\n'
        b"\r\n--b1\r\n\r\n text \t \r\n--b1--\r\n"
    )
    for kind in ("rsa2048", "ed25519"):
        signed = signer(kind).sign(msg)
        assert verifies(signed, kind)
        assert h_list(signed)[:4] == ["from", "to", "subject", "date"]


def test_rfc2047_encoded_subject_verifies():
    msg = MESSAGE.replace(
        b"Subject: Weekly news",
        b"Subject: =?utf-8?b?TmV3cyBmw7xyIGRpY2ggw6TDtsO8IOKCrA==?=\r\n"
        b" =?utf-8?q?_und_mehr_=E2=9C=93?=",
    )
    signed = signer("rsa2048").sign(msg)
    assert verifies(signed, "rsa2048")
    assert not verifies(signed.replace(b"TmV3", b"TmV4"), "rsa2048")


def test_large_body_verifies():
    body = b"".join(b"line %06d with some text and trailing space \r\n" % i for i in range(40000))
    msg = MESSAGE + body
    assert len(msg) > 1_500_000
    for kind in ("rsa2048", "ed25519"):
        assert verifies(signer(kind).sign(msg), kind)


def test_sign_all_adds_both_signatures_and_each_verifies():
    rsa_signer, ed_signer = signer("rsa2048"), signer("ed25519")
    signed = sign_all([rsa_signer, ed_signer], MESSAGE, timestamp=1700000000)
    assert signed.endswith(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 2
    assert signed.index(b"a=rsa-sha256") < signed.index(b"a=ed25519-sha256")
    dnsfunc = dnsfunc_for("rsa2048", "ed25519")
    assert dkim.DKIM(signed).verify(idx=0, dnsfunc=dnsfunc)
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=dnsfunc)
    tampered = signed.replace(b"Weekly news", b"Weekly nevs")
    assert not dkim.DKIM(tampered).verify(idx=0, dnsfunc=dnsfunc)
    assert not dkim.DKIM(tampered).verify(idx=1, dnsfunc=dnsfunc)


def test_sign_all_without_signers_returns_message():
    assert sign_all([], MESSAGE) == MESSAGE


@pytest.mark.parametrize("kind", KINDS)
def test_header_is_folded_into_short_crlf_lines(kind):
    header = signer(kind).signature_header(MESSAGE)
    assert header.endswith(b"\r\n") and b"\n" not in header.replace(b"\r\n", b"")
    lines = header[:-2].split(b"\r\n")
    assert lines[0].startswith(b"DKIM-Signature: v=1;")
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])
    assert max(len(line) for line in lines) <= 78


def test_body_hash_matches_dkimpy_relaxed_canonicalisation():
    for body in [b"", b"\r\n", b"\r\n\r\n", b"a\r\n", b" a  b \t\r\n\r\n", b"x\r\n \r\n\t\r\n"]:
        expected = base64.b64encode(
            dkim.HASH_ALGORITHMS[b"rsa-sha256"](Relaxed.canonicalize_body(body)).digest()
        )
        assert body_hash(body) == expected, body


def test_body_without_final_crlf_is_hashed_as_smtp_carries_it():
    msg = b"From: a@example.com\r\n\r\nlast line with space \t"
    signed = signer("ed25519").sign(msg)
    assert verifies(signed + b"\r\n", "ed25519")  # what the receiver sees after DATA


def test_same_body_hash_as_dkimpy_signing_the_same_message():
    ours = tags(signer("rsa2048").sign(MESSAGE))
    theirs = tags(
        dkim.sign(
            MESSAGE, b"s", DOMAIN.encode(), pem("rsa2048"), canonicalize=(b"relaxed", b"relaxed")
        )
        + MESSAGE
    )
    assert ours[b"bh"] == theirs[b"bh"]


def test_bare_lf_is_rejected():
    with pytest.raises(SigningError, match="bare LF"):
        signer("ed25519").sign(b"From: a@example.com\n\nbody\n")


def test_header_only_message_signs():
    msg = b"From: a@example.com\r\nSubject: empty\r\n"
    assert verifies(signer("ed25519").sign(msg), "ed25519")


@pytest.mark.parametrize(
    "bad",
    [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\r\nAAAA\r\n-----END PRIVATE KEY-----\r\n"],
)
def test_bad_pem_raises_signing_error(bad):
    with pytest.raises(SigningError, match="cannot be loaded") as info:
        DkimSigner(bad, DOMAIN, "s1")
    assert "\n" not in str(info.value)


def test_encrypted_small_and_unsupported_keys_are_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(SigningError, match="cannot be loaded"):
        load_private_key(encrypted)
    with pytest.raises(SigningError, match="512 bits"):
        load_private_key(RSA_512_PEM)
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SigningError, match="not supported"):
        load_private_key(ec_pem)
    with pytest.raises(SigningError):
        generate_private_key("rsa", 512)
    with pytest.raises(SigningError):
        generate_private_key("dsa")


@pytest.mark.parametrize("domain", ["bücher.example", "bad domain", "", "a;b=c"])
def test_invalid_domain_is_refused(domain):
    with pytest.raises(SigningError, match="domain"):
        DkimSigner(pem("ed25519"), domain, "s1")


def test_rsa_txt_record_is_split_into_255_char_strings():
    key = load_private_key(pem("rsa2048"))
    record = dns_txt_value(key)
    assert record.startswith("v=DKIM1; k=rsa; p=MII")
    assert len(record) > 255
    parts = split_txt(record)
    assert len(parts) == 2 and all(len(p) <= 255 for p in parts)
    assert "".join(parts) == record
    assert split_txt("abc", size=1) == ["a", "b", "c"] and split_txt("") == [""]


def test_ed25519_record_carries_the_32_raw_public_bytes():
    key = load_private_key(pem("ed25519"))
    record = dns_txt_value(key)
    assert record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(record.split("p=")[1])) == 32


def test_public_key_matches_only_its_own_record():
    rsa_key, ed_key = load_private_key(pem("rsa2048")), load_private_key(pem("ed25519"))
    rsa_p = dns_txt_value(rsa_key).split("p=")[1]
    folded = " ".join(rsa_p[i : i + 60] for i in range(0, len(rsa_p), 60))
    assert public_key_matches(rsa_key, rsa_p) and public_key_matches(rsa_key, folded)
    assert not public_key_matches(ed_key, rsa_p)
    assert not public_key_matches(load_private_key(pem("rsa1024")), rsa_p)
    assert not public_key_matches(rsa_key, "!!not base64!!")


def test_key_bits_and_type_detection():
    assert key_bits(load_private_key(pem("rsa2048"))) == 2048
    assert key_bits(load_private_key(pem("rsa1024"))) == 1024
    assert key_bits(load_private_key(pem("ed25519"))) is None
    assert signer("rsa1024").algorithm == "rsa-sha256"


# Header values: printable ASCII and blanks, folded at some of their spaces.
_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\t "),
    min_size=1,
    max_size=120,
).filter(lambda v: v.strip())
_line = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=200)


@settings(max_examples=60, deadline=None)
@given(
    subject=_value,
    to=_value,
    extra=_value,
    fold=st.booleans(),
    lines=st.lists(_line, max_size=30),
    trailing_blank=st.integers(0, 3),
)
def test_property_sign_then_verify_holds(subject, to, extra, fold, lines, trailing_blank):
    if fold:
        subject = subject.replace(" ", "\r\n ", 2)
    msg = (
        f"From: a@example.com\r\nTo: {to}\r\nSubject: {subject}\r\nX-Extra: {extra}\r\n"
        "\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n" * trailing_blank
    ).encode()
    assert verifies(signer("ed25519").sign(msg), "ed25519")


# -- the per-campaign fast path: a body hash from the composer, layouts kept per header set ----


def _newsletter_messages(count: int):
    from bulkmail.compose import CampaignInfo, Composer, ComposeSettings, Recipient

    campaign = CampaignInfo(
        9, "Notes", "Hello {{ subscriber.name }}", "News <news@example.com>", 2, "Readers",
        "newsletter", reply_to="help@example.com",
    )  # fmt: skip
    settings = ComposeSettings(
        b"signing-test-secret-0123456789", "https://example.com/u/", "unsub@example.com",
        "bounces.example.com", "example.com",
    )  # fmt: skip
    composer = Composer(campaign, settings)
    return [
        composer.compose(Recipient(n, f"r{n}@example.org", f"Reader {n}", {"city": "Oslo"}))
        for n in range(count)
    ]


@pytest.mark.parametrize("kind", ["rsa2048", "ed25519"])
def test_signature_with_the_composers_body_hash_is_byte_identical(kind):
    s = signer(kind)  # one signer for all, its kept layouts and headers against a new one
    for composed in _newsletter_messages(5):
        fast = s.signature_header(composed.data, 1700000000, bh=composed.body_hash)
        assert fast == signer(kind).signature_header(composed.data, 1700000000)
        assert verifies(fast + composed.data, kind)


def test_sign_composed_verifies_for_both_keys_and_fails_when_altered():
    from bulkmail.delivery.pipeline import sign_composed

    for composed in _newsletter_messages(3):
        signed = sign_composed([signer("rsa2048"), signer("ed25519")], composed)
        assert verifies(signed, "rsa2048", 0) and verifies(signed, "ed25519", 1)
        altered = signed.replace(b"Reader ", b"Raeder ", 1)
        assert not verifies(altered, "rsa2048", 0)


def test_one_signer_signs_messages_of_different_header_sets_as_fresh_ones_do():
    """The layout kept for one header set must not leak into another."""
    plain = MESSAGE
    replied = insert_header(MESSAGE, b"Reply-To: help@example.com\r\n", "bottom")
    doubled = insert_header(MESSAGE, b"Subject: second\r\n", "bottom")
    s = signer("ed25519")
    for msg in (plain, replied, doubled, plain, replied) * 2:
        for stamp in (1700000000, 99, 12345678901):
            assert s.signature_header(msg, stamp) == signer("ed25519").signature_header(msg, stamp)
    assert "reply-to" in h_list(s.sign(replied)) and "reply-to" not in h_list(s.sign(plain))


def test_bare_lf_in_the_header_is_rejected_with_a_given_body_hash():
    with pytest.raises(SigningError, match="bare LF"):
        signer("ed25519").signature_header(b"From: a@example.com\nTo: b\r\n\r\nx\r\n", bh=b"x")
