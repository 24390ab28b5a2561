"""Message composition: rendering, MIME structure, headers, errors (bulkmail.compose)."""

from __future__ import annotations

import email.header
import email.policy
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from bulkmail.compose import (
    CampaignInfo,
    Composed,
    Composer,
    ComposeSettings,
    Recipient,
    html_to_text,
    parse_token,
    parse_verp,
)
from bulkmail.compose.mime import qp_encode
from bulkmail.compose.render import TemplateSet
from bulkmail.errors import ConfigError, InputError, TemplateError

SECRET = b"compose-test-secret-0123456789"
SETTINGS = ComposeSettings(
    secret=SECRET,
    unsubscribe_url="https://news.example.com/u/",
    unsubscribe_mailto="unsubscribe@example.com",
    return_path_domain="bounces.example.com",
    message_id_domain="mail.example.com",
    sender_id="acme",
)
CAMPAIGN = CampaignInfo(
    id=11,
    name="Spring News",
    subject="News for {{ subscriber.name or 'you' }}",
    from_header="ACME News <news@example.com>",
    list_id=3,
    list_name="ACME Readers",
    template="newsletter",
)
ANN = Recipient(5, "ann@example.org", "Ann Smith", {"city": "Zürich"})
NOW = 1_700_000_000.0
EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "x-bulkmail-delivery",
}


def parse(composed: Composed) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(composed.data)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    """The decoded text of the ``text/<subtype>`` part, with LF line ends."""
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def raw_header(data: bytes, name: str) -> str:
    """The unfolded value of header ``name`` as it is on the wire."""
    for field in re.split(rb"\r\n(?![ \t])", header_block(data)):
        key, _, value = field.decode("utf-8").partition(":")
        if key.lower() == name.lower():
            return value.replace("\r\n", "").strip()
    raise KeyError(name)


def display_name(data: bytes, name: str) -> str:
    """The display name in header ``name``, decoded as RFC 2047 section 6.2 says.

    CPython's parser keeps the space between adjacent encoded-words in a phrase (its own
    output for a long non-ASCII name does not round-trip either), so decode with
    ``email.header``, which ignores it as the RFC requires.
    """
    phrase = raw_header(data, name).rpartition("<")[0].strip()
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return str(email.header.make_header(email.header.decode_header(phrase)))


def make_template(root: Path, **files: str) -> str:
    directory = root / "tpl"
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (directory / name.replace("_", ".")).write_text(source, encoding="utf-8")
    return str(directory)


def composer_for(tmp_path: Path, subject: str = "Hi", **files: str) -> Composer:
    campaign = replace(CAMPAIGN, subject=subject, template=make_template(tmp_path, **files))
    return Composer(campaign, SETTINGS)


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


# -- structure ---------------------------------------------------------------------------


def test_message_is_multipart_alternative_with_text_then_html_in_utf8() -> None:
    message = parse(Composer(CAMPAIGN, SETTINGS).compose(ANN, NOW))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    assert not message.defects and not any(p.defects for p in parts)


def test_every_header_is_present_exactly_once() -> None:
    campaign = replace(CAMPAIGN, reply_to="Help <help@example.com>")
    composed = Composer(campaign, SETTINGS).compose(ANN)
    names = [name.lower() for name in parse(composed).keys()]
    assert sorted(names) == sorted(EXPECTED_HEADERS | {"reply-to"})


def test_reply_to_appears_only_when_given() -> None:
    assert "Reply-To" not in parse(Composer(CAMPAIGN, SETTINGS).compose(ANN))


def test_message_is_crlf_only_seven_bit_with_short_lines() -> None:
    composer = Composer(CAMPAIGN, SETTINGS)
    people = [
        ANN,
        Recipient(6, "b@example.org", "Bérénice « Béa » Dupont-Ærø " * 4, {}),
        Recipient(7, "c@example.org", "", {"city": "x" * 3000}),
    ]
    for person in people:
        data = composer.compose(person, NOW).data
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert b"\r" not in data.replace(b"\r\n", b"")
        assert data.isascii()
        lines = data.split(b"\r\n")
        assert max(len(line) for line in lines) <= 998
        assert all(len(line) <= 78 for line in header_block(data).split(b"\r\n"))
        body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
        assert all(len(line) <= 76 for line in body_lines)


def test_bodies_decode_to_the_rendered_text() -> None:
    composer = Composer(CAMPAIGN, SETTINGS)
    composed = composer.compose(ANN, NOW)
    token = composed.envelope_from.split("+")[1].split("@")[0]
    expected = TemplateSet(CAMPAIGN).render(ANN, f"https://news.example.com/u/{token}")
    text, html = body(parse(composed), "plain"), body(parse(composed), "html")
    assert expected.html is not None
    assert text.rstrip("\n") == expected.text.rstrip("\n")
    assert html.rstrip("\n") == expected.html.rstrip("\n")
    assert "Hi Ann Smith," in text and "Zürich" in text and "Zürich" in html


def test_boundary_text_inside_a_body_does_not_split_the_message(tmp_path: Path) -> None:
    probe = composer_for(tmp_path, body_txt="x", body_html="<p>x</p>").compose(ANN)
    boundary = parse(probe).get_boundary()
    assert boundary
    composer = composer_for(
        tmp_path, body_txt=f"--{boundary}\n--{boundary}--\n", body_html=f"<p>\n--{boundary}\n</p>"
    )
    message = parse(composer.compose(ANN))
    parts = list(message.iter_parts())
    assert len(parts) == 2
    assert f"--{boundary}--" in parts[0].get_content()


def test_text_only_template_gives_a_single_text_part(tmp_path: Path) -> None:
    message = parse(composer_for(tmp_path, body_txt="Hello {{ subscriber.email }}").compose(ANN))
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Hello ann@example.org"


# -- header values -------------------------------------------------------------------------

NAMES = [
    "Ann Smith",
    "Zoë Ångström",
    'Jo "JJ" O\'Brien, Jr.',
    "Müller, Hans",
    "李小龍",
    "Back\\slash (and) <angles> @ ; :",
    "=?utf-8?q?not_an_encoded_word?=",
    "😀 " * 30,
    "a" * 150,
]


@pytest.mark.parametrize("name", NAMES)
def test_recipient_display_name_decodes_back(name: str) -> None:
    composed = Composer(CAMPAIGN, SETTINGS).compose(replace(ANN, name=name))
    assert display_name(composed.data, "To") == name.strip()
    assert parse(composed)["To"].addresses[0].addr_spec == "ann@example.org"


@pytest.mark.parametrize("name", NAMES)
def test_from_display_name_decodes_back(name: str) -> None:
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    from_header = f"{quoted} <news@example.com>" if "<" in name else f"{name} <news@example.com>"
    composed = Composer(replace(CAMPAIGN, from_header=from_header), SETTINGS).compose(ANN)
    assert display_name(composed.data, "From") == name.strip()
    assert parse(composed)["From"].addresses[0].addr_spec == "news@example.com"


@pytest.mark.parametrize("name", ["Zoë Ångström", 'Jo "JJ" O\'Brien, Jr.', "李小龍"])
def test_short_display_names_also_decode_with_the_stdlib_parser(name: str) -> None:
    composed = Composer(CAMPAIGN, SETTINGS).compose(replace(ANN, name=name))
    assert parse(composed)["To"].addresses[0].display_name == name


@pytest.mark.parametrize(
    "subject",
    [
        "Plain subject",
        "Grüße aus Zürich – 20 % Rabatt",
        "日本語の件名" * 10,
        "word " * 40,
        "x" * 200,
        "=?utf-8?b?Zm9v?= literal",
    ],
)
def test_subject_decodes_back(subject: str) -> None:
    campaign = replace(CAMPAIGN, subject="{{ subscriber.attributes.s }}")
    composed = Composer(campaign, SETTINGS).compose(replace(ANN, attributes={"s": subject}))
    assert parse(composed)["Subject"] == subject.strip()
    assert all(len(line) <= 78 for line in header_block(composed.data).split(b"\r\n"))


def test_line_breaks_in_values_become_spaces() -> None:
    person = replace(ANN, name="Ann\r\nBcc: victim@example.net", attributes={"s": "a\nb\rc\x00d"})
    campaign = replace(CAMPAIGN, subject="{{ subscriber.attributes.s }}")
    message = parse(Composer(campaign, SETTINGS).compose(person))
    assert "Bcc" not in message
    assert message["To"].addresses[0].display_name == "Ann Bcc: victim@example.net"
    assert message["Subject"] == "a b cd"


def test_date_is_rfc5322_for_the_given_time() -> None:
    date = parse(Composer(CAMPAIGN, SETTINGS).compose(ANN, NOW))["Date"]
    assert date.datetime == datetime.fromtimestamp(NOW, UTC)
    assert str(date).endswith("+0000")


def test_message_id_is_stable_per_campaign_and_subscriber() -> None:
    first = Composer(CAMPAIGN, SETTINGS).compose(ANN, NOW)
    again = Composer(CAMPAIGN, SETTINGS).compose(ANN, NOW + 3600)
    other = Composer(CAMPAIGN, SETTINGS).compose(replace(ANN, subscriber_id=6), NOW)
    assert first.message_id == again.message_id != other.message_id
    assert re.fullmatch(r"<[^<>@\s]+@mail\.example\.com>", first.message_id)
    assert parse(first)["Message-ID"] == first.message_id


def test_unsubscribe_headers_carry_a_token_for_this_delivery() -> None:
    composed = Composer(CAMPAIGN, SETTINGS).compose(ANN)
    message = parse(composed)
    https, mailto = (u.strip(" <>") for u in str(message["List-Unsubscribe"]).split(","))
    token = https.removeprefix("https://news.example.com/u/")
    assert parse_token(SECRET, token) == (11, 5)
    assert mailto == f"mailto:unsubscribe@example.com?subject=unsubscribe-{token}"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-Bulkmail-Delivery"] == token
    assert https in body(message, "html")


def test_unsubscribe_url_may_place_the_token_itself() -> None:
    settings = replace(
        SETTINGS, unsubscribe_url="https://x.example/u?t={token}", unsubscribe_mailto=None
    )
    value = str(parse(Composer(CAMPAIGN, settings).compose(ANN))["List-Unsubscribe"])
    assert re.fullmatch(r"<https://x\.example/u\?t=[0-9a-z-]+>", value)


def test_envelope_sender_is_a_verp_address_for_this_delivery() -> None:
    composed = Composer(CAMPAIGN, SETTINGS).compose(ANN)
    assert composed.envelope_from.endswith("@bounces.example.com")
    assert parse_verp(composed.envelope_from, SECRET) == (11, 5)
    assert composed.recipient == "ann@example.org"


def test_list_id_and_feedback_id_name_the_list_and_campaign() -> None:
    message = parse(Composer(CAMPAIGN, SETTINGS).compose(ANN))
    assert str(message["List-Id"]) == "ACME Readers <acme-readers.3.mail.example.com>"
    assert message["Feedback-ID"] == "11:3:bulk:acme"


def test_non_ascii_local_part_needs_smtputf8() -> None:
    composer = Composer(CAMPAIGN, SETTINGS)
    assert composer.compose(replace(ANN, email="jürgen@example.org")).needs_smtputf8
    assert not composer.compose(ANN).needs_smtputf8


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign",
        "a b@example.org",
        "a@b@c",
        "ann@example.org\r\nBcc: x@y.z",
        "<ann@example.org>",
        ".ann@example.org",
        "ann@-example.org",
    ],
)
def test_invalid_recipient_address_is_an_input_error(address: str) -> None:
    with pytest.raises(InputError):
        Composer(CAMPAIGN, SETTINGS).compose(replace(ANN, email=address))


@pytest.mark.parametrize(
    "from_header",
    [
        "",
        "nobody",
        "Name <>",
        "Name <a@b\r\nBcc: x@y.z>",
        "Name <ü@example.com>",
        "A <a@x.org>, B <b@x.org>",
    ],
)
def test_invalid_from_is_an_input_error_at_construction(from_header: str) -> None:
    with pytest.raises(InputError):
        Composer(replace(CAMPAIGN, from_header=from_header), SETTINGS)


@pytest.mark.parametrize(
    "change",
    [
        {"secret": b"short"},
        {"message_id_domain": "bad domain"},
        {"return_path_domain": ""},
        {"unsubscribe_url": "javascript:alert(1)"},
        {"unsubscribe_url": "https://x.example/\r\nBcc: a"},
        {"unsubscribe_mailto": "not an address"},
    ],
)
def test_bad_settings_are_a_config_error(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Composer(CAMPAIGN, replace(SETTINGS, **change))  # type: ignore[arg-type]


# -- templates -----------------------------------------------------------------------------


def test_missing_template_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not found"):
        Composer(replace(CAMPAIGN, template=str(tmp_path / "nope")), SETTINGS)
    with pytest.raises(TemplateError, match="not found"):
        Composer(replace(CAMPAIGN, template="no-such-bundled-template"), SETTINGS)


def test_syntax_error_names_file_and_line_at_construction(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        composer_for(tmp_path, body_txt="ok\n{{ subscriber.name\n", body_html="<p>x</p>")
    message = str(caught.value)
    assert message.startswith(f"template {tmp_path / 'tpl' / 'body.txt'} line 2: ")
    assert "\n" not in message


def test_syntax_error_in_campaign_subject_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="campaign subject"):
        composer_for(tmp_path, subject="{% if %}", body_txt="x")


def test_undefined_variable_fails_check_naming_file_and_line(tmp_path: Path) -> None:
    composer = composer_for(tmp_path, body_txt="x", body_html="<p>\n{{ subscriber.nickname }}</p>")
    with pytest.raises(TemplateError) as caught:
        composer.check()
    message = str(caught.value)
    assert message == (
        f"template {tmp_path / 'tpl' / 'body.html'} line 2: "
        "'subscriber' has no attribute 'nickname'"
    )


def test_an_error_in_an_included_file_names_that_file_and_line(tmp_path: Path) -> None:
    composer = composer_for(tmp_path, body_html='<p>x</p>\n{% include "header.html" %}')
    (tmp_path / "tpl" / "header.html").write_text("<h1>\n{{ subscriber.nme }}</h1>")
    with pytest.raises(TemplateError) as caught:
        composer.check()
    assert str(caught.value) == (
        f"template {tmp_path / 'tpl' / 'header.html'} line 2: 'subscriber' has no attribute 'nme'"
    )


def test_check_passes_for_the_bundled_newsletter() -> None:
    Composer(CAMPAIGN, SETTINGS).check()


def test_error_raised_while_rendering_is_a_template_error(tmp_path: Path) -> None:
    composer = composer_for(tmp_path, body_txt="{{ 1 // subscriber.attributes.zero }}")
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        composer.compose(replace(ANN, attributes={"zero": 0}))


def test_subject_txt_is_used_when_the_campaign_has_no_subject(tmp_path: Path) -> None:
    composer = composer_for(
        tmp_path, subject="", body_txt="x", subject_txt="From file {{ 1 + 1 }}\n"
    )
    assert parse(composer.compose(ANN))["Subject"] == "From file 2"
    with pytest.raises(TemplateError, match="no subject"):
        composer_for(tmp_path / "other", subject="  ", body_txt="x")


def test_templates_dir_argument_finds_a_named_template(tmp_path: Path) -> None:
    make_template(tmp_path, body_txt="custom body")
    composer = Composer(replace(CAMPAIGN, template="tpl"), SETTINGS, templates_dir=tmp_path)
    assert parse(composer.compose(ANN)).get_content().strip() == "custom body"


def test_html_is_autoescaped_but_text_and_subject_are_not(tmp_path: Path) -> None:
    composer = composer_for(
        tmp_path,
        subject="{{ subscriber.name }}",
        body_txt="{{ subscriber.name }}",
        body_html="<p>{{ subscriber.name }}</p>",
    )
    message = parse(composer.compose(replace(ANN, name="<b>Tom & Jerry</b>")))
    text, html = (p.get_content() for p in message.iter_parts())
    assert text.strip() == "<b>Tom & Jerry</b>" == message["Subject"]
    assert "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>" in html


@pytest.mark.parametrize(
    "expression",
    [
        "subscriber.attributes.city",
        "subscriber.city",
        'subscriber.attributes.get("city")',
        'subscriber.attributes["city"]',
    ],
)
def test_attributes_are_reachable_several_ways(tmp_path: Path, expression: str) -> None:
    composer = composer_for(tmp_path, body_txt=f"{{{{ {expression} }}}}")
    assert parse(composer.compose(ANN)).get_content().strip() == "Zürich"


def test_bundled_newsletter_greets_and_mentions_city_only_when_known() -> None:
    composer = Composer(CAMPAIGN, SETTINGS)
    with_city = body(parse(composer.compose(ANN)), "html")
    anonymous = parse(composer.compose(Recipient(9, "z@example.org")))
    assert "Hi Ann Smith," in with_city and "Zürich" in with_city
    assert "Hi there," in body(anonymous, "html")
    assert "meetup" not in body(anonymous, "plain")
    assert anonymous["Subject"] == "News for you"


def test_html_only_template_gets_a_text_part_from_the_html(tmp_path: Path) -> None:
    html = (
        "<html><head><style>p {color: red}</style></head><body>"
        '<h1>Hello {{ subscriber.name }}</h1><p>Read <a href="https://e.x/a">this</a>.</p>'
        "<ul>{% for i in [1, 2] %}<li>item {{ i }}</li>{% endfor %}</ul>"
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    message = parse(composer_for(tmp_path, body_html=html).compose(ANN))
    text = body(message, "plain")
    assert text.startswith("Hello Ann Smith\n\nRead this (https://e.x/a).\n\n- item 1\n- item 2\n")
    assert re.search(r"Unsubscribe \(https://news\.example\.com/u/[0-9a-z-]+\)", text)
    assert "<" not in text and "color" not in text


def test_html_only_template_with_a_statement_inside_a_tag_still_gets_text(tmp_path: Path) -> None:
    html = '<p {% if subscriber.name %}class="named"{% endif %}>Dear {{ subscriber.name }}</p>'
    message = parse(composer_for(tmp_path, body_html=html).compose(ANN))
    assert body(message, "plain").strip() == "Dear Ann Smith"


# -- html_to_text and quoted-printable -----------------------------------------------------


def test_html_to_text_keeps_structure_and_drops_tags() -> None:
    html = (
        "<p>One  <b>two</b>\nthree &amp; four</p><ol><li>a</li><li>b</li></ol>"
        "<p>see <a href='https://x.example/'>the site</a> or "
        "<a href='mailto:a@x.example'>a@x.example</a><br>bye</p><script>evil()</script>"
    )
    assert html_to_text(html) == (
        "One two three & four\n\n1. a\n2. b\n\n"
        "see the site (https://x.example/) or a@x.example\nbye\n"
    )


def test_qp_encoding_is_crlf_with_soft_breaks_within_76() -> None:
    text = "é" * 100 + "\nFrom here\n" + "x" * 300 + " \n.\nend"
    encoded = qp_encode(text)
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert b"\n" not in encoded.replace(b"\r\n", b"") and b"\r\nFrom " not in encoded
    import quopri

    assert quopri.decodestring(encoded).decode().replace("\r\n", "\n") == text + "\n"
