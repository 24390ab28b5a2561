"""No value from data can add a header or a line break to the header block (property tests)."""

from __future__ import annotations

import email.header
import email.policy
import re
from dataclasses import replace
from email.parser import BytesParser

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bulkmail.compose import CampaignInfo, Composer, ComposeSettings, Recipient
from bulkmail.compose.mime import clean_header_text
from bulkmail.errors import InputError

SETTINGS = ComposeSettings(
    b"hypothesis-secret-0123456789",
    "https://news.example.com/u/",
    "unsubscribe@example.com",
    "bounces.example.com",
    "mail.example.com",
)
CAMPAIGN = CampaignInfo(
    1,
    "Campaign",
    "{{ subscriber.attributes.subject }}",
    "News <news@example.com>",
    2,
    "Readers",
    "newsletter",
)
HEADERS = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "x-bulkmail-delivery",
]
FIELD_START = re.compile(rb"[!-9;-~]+:")
NASTY = st.sampled_from(
    [
        "\r",
        "\n",
        "\r\n",
        "\x00",
        "\x0b",
        "\x85",
        "\u2028",
        "\t",
        ":",
        "Bcc: evil@example.net",
        "\r\nX-Evil: 1",
        "=?utf-8?b?DQpCY2M6IHg=?=",
        '"',
        "\\",
        "<",
        ">",
        ",",
        ";",
        "@",
        "é",
        "😀",
        " ",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=20), NASTY), max_size=12).map("".join)
COMMON = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_COMPOSER = Composer(replace(CAMPAIGN, reply_to="Help <help@example.com>"), SETTINGS)


def check_header_block(data: bytes, expected: list[str] = HEADERS) -> None:
    """Each line is a field start or a folded continuation; each header exactly once."""
    head, separator, _ = data.partition(b"\r\n\r\n")
    assert separator
    lines = head.split(b"\r\n")
    for line in lines:
        assert b"\r" not in line and b"\n" not in line and b"\x00" not in line
        assert len(line) <= 78  # every value here can be folded or encoded to fit
        assert FIELD_START.match(line) or line[:1] in (b" ", b"\t"), line
        assert line.strip(b" \t"), "a whitespace-only line would end the header block early"
    names = [line.split(b":", 1)[0].decode().lower() for line in lines if line[:1] not in b" \t"]
    assert sorted(names) == sorted(expected)
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert sorted(k.lower() for k in message.keys()) == sorted(expected)


def wire_display_name(data: bytes, header: str) -> str:
    head = data.partition(b"\r\n\r\n")[0].decode("utf-8")
    match = re.search(rf"^{header}:(.*?)\r\n(?![ \t])", head, re.M | re.S | re.I)
    assert match
    phrase = match[1].replace("\r\n", "").rpartition("<")[0].strip()
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return str(email.header.make_header(email.header.decode_header(phrase)))


@COMMON
@given(name=TEXT, subject=TEXT, city=TEXT)
def test_recipient_data_never_adds_a_header(name: str, subject: str, city: str) -> None:
    recipient = Recipient(7, "reader@example.org", name, {"subject": subject, "city": city})
    data = _COMPOSER.compose(recipient, 1_700_000_000).data
    check_header_block(data)
    assert data.isascii()
    assert wire_display_name(data, "To") == clean_header_text(name)
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert message["Subject"] == clean_header_text(subject)


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@COMMON
@given(from_name=TEXT, list_name=TEXT, campaign_name=TEXT, subject=TEXT)
def test_campaign_data_never_adds_a_header(
    from_name: str, list_name: str, campaign_name: str, subject: str
) -> None:
    assume("{" not in subject)  # the campaign subject is a template; braces would be Jinja
    campaign = replace(
        CAMPAIGN,
        from_header=f"{quoted(from_name)} <news@example.com>",
        list_name=list_name,
        name=campaign_name,
        subject=subject + " {{ campaign.name }}",
        reply_to=f"{quoted(from_name)} <r@example.org>",
    )
    data = Composer(campaign, SETTINGS).compose(Recipient(8, "reader@example.org"), 0).data
    check_header_block(data)
    assert data.isascii()
    assert wire_display_name(data, "From") == clean_header_text(from_name)
    assert wire_display_name(data, "Reply-To") == clean_header_text(from_name)
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert message["Subject"] == clean_header_text(f"{subject} {campaign_name}")


@COMMON
@given(from_header=TEXT)
def test_an_unquoted_from_is_either_refused_or_harmless(from_header: str) -> None:
    campaign = replace(CAMPAIGN, from_header=f"{from_header} <news@example.com>")
    try:
        composer = Composer(campaign, SETTINGS)
    except InputError:
        assert "<" in from_header or ">" in from_header
        return
    data = composer.compose(Recipient(8, "reader@example.org", "", {"subject": "s"}), 0).data
    check_header_block(data, [h for h in HEADERS if h != "reply-to"])
    if '"' not in from_header:  # otherwise the name may be a quoted-string: parsed, not literal
        assert wire_display_name(data, "From") == clean_header_text(from_header)
