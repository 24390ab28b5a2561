"""Per-campaign body encoding gives byte for byte what encoding from scratch gives.

``BodyEncoder`` reuses the quoted-printable and canonical bytes of lines it has seen; the
composer hashes the body for DKIM from those canonical parts. Both must equal the from-scratch
results (``qp_encode`` of the whole text, ``body_hash`` of the finished message) for any text,
including the cases where quoted-printable and relaxed canonicalisation have edges: lines at
and around 76 octets (soft breaks), trailing spaces and tabs, a lone dot, "From " at a line
start or after a soft break, whitespace-only and empty lines at the end, CR and CRLF.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkmail.compose import CampaignInfo, Composer, ComposeSettings, Recipient
from bulkmail.compose import body as body_module
from bulkmail.compose.body import BodyEncoder, qp_encode
from bulkmail.signing.dkim import (
    body_hash,
    canonicalize_body,
    canonicalize_lines,
    split_message,
    strip_trailing_empty_lines,
)

PIECES = st.sampled_from(
    [
        " ", "  ", "\t", " \t ", ".", "From ", "from ", "=", "==", "é", "😀", "\x00", "\x7f",
        "\r", "\n", "\r\n", "\n\n", "\n \n", "\n\t\n", "a" * 70, "b" * 73, "c" * 75, "d" * 76,
        "e" * 77, "f" * 150, "x" * 72 + " ", "y" * 74 + "\t", "z" * 73 + "From ", "<p>", "&amp;",
    ]
)  # fmt: skip
TEXT = st.lists(st.one_of(st.text(max_size=30), PIECES), max_size=25).map("".join)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_encoder_equals_qp_from_scratch_for_every_text_it_is_given(texts: list[str]) -> None:
    encoder = BodyEncoder()  # one for all: later texts reuse lines of earlier ones
    for text in texts * 2:
        encoded, canonical = encoder.encode(text)
        assert encoded == qp_encode(text)
        assert canonical == canonicalize_lines(encoded)
        assert strip_trailing_empty_lines(canonical) == canonicalize_body(encoded)


def test_from_after_a_soft_line_break_is_guarded_like_from_scratch() -> None:
    text = "x" * 75 + "From here on\nFrom the start\n"
    encoded, _ = BodyEncoder().encode(text)
    assert encoded == qp_encode(text)
    assert b"=\r\n=46rom here" in encoded and encoded.count(b"=46rom") == 2


def test_encoder_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body_module, "_MAX_LINES", 50)
    encoder = BodyEncoder()
    for n in range(500):
        text = f"static line\npersonal line {n}\nanother {n}\n"
        assert encoder.encode(text)[0] == qp_encode(text)
        assert len(encoder._qp) <= 50 + 3
    assert encoder.encode("static line\n")[0] == b"static line\r\n"


SETTINGS = ComposeSettings(
    b"body-hash-secret-0123456789", "https://news.example.com/u/", "unsubscribe@example.com",
    "bounces.example.com", "mail.example.com",
)  # fmt: skip


def composer_for(folder: Path, html: str | None, text: str | None) -> Composer:
    folder.mkdir(exist_ok=True)
    for name, source in (("body.html", html), ("body.txt", text)):
        path = folder / name
        if source is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(source, encoding="utf-8")
    campaign = CampaignInfo(
        4, "Notes", "Hi {{ subscriber.name }}", "News <news@example.com>", 2, "Readers",
        str(folder),
    )  # fmt: skip
    return Composer(campaign, SETTINGS)


# Template bodies are UTF-8 files: no lone surrogates (category Cs), which no file can hold.
BODY_CHARS = st.characters(exclude_characters="{}%#", exclude_categories=("Cs",))
BODY = st.lists(
    st.one_of(st.text(alphabet=BODY_CHARS, max_size=30), PIECES),
    max_size=15,
).map("".join)
NAME = st.one_of(st.text(max_size=30), PIECES)


@PROPERTY
@given(
    html=st.one_of(st.none(), BODY),
    text=st.one_of(st.none(), BODY),
    names=st.lists(NAME, min_size=1, max_size=4),
)
def test_composed_body_hash_equals_the_hash_of_the_finished_body(
    tmp_path_factory: pytest.TempPathFactory, html: str | None, text: str | None, names: list[str]
) -> None:
    if html is None and text is None:
        text = ""
    folder = tmp_path_factory.mktemp("tpl")
    # The personalised value sits inside a line, at a line start and alone on a line.
    html = (
        None
        if html is None
        else html + "<p>{{ subscriber.name }}</p>\n{{ subscriber.city }}" + html
    )
    text = (
        None
        if text is None
        else text + "\nHi {{ subscriber.name }}\n" + text + "{{ subscriber.city }}"
    )
    composer = composer_for(folder, html, text)
    for n, name in enumerate(names * 2):
        person = Recipient(n + 1, f"r{n}@example.org", name, {"city": name[::-1]})
        composed = composer.compose(person, 1_700_000_000)
        assert composed.body_hash == body_hash(split_message(composed.data)[1])


def test_bundled_newsletter_body_hash_holds_over_many_recipients() -> None:
    campaign = CampaignInfo(
        5, "Notes", "Hello {{ subscriber.name }}", "News <news@example.com>", 2, "Readers",
        "newsletter",
    )  # fmt: skip
    composer = Composer(campaign, SETTINGS)
    for n in range(300):
        person = Recipient(n, f"r{n}@example.org", f"Reader {n}", {"city": ["Oslo", ""][n % 2]})
        composed = composer.compose(person)
        assert composed.body_hash == body_hash(split_message(composed.data)[1])
    assert composer._body._qp, "the lines are remembered"


def test_a_text_only_body_ending_in_blank_lines_hashes_without_them(tmp_path: Path) -> None:
    composer = composer_for(tmp_path / "t", None, "Hi {{ subscriber.name }}\n \n\t\n\n\n\n")
    composed = composer.compose(Recipient(1, "a@example.org", "A  b "))
    body = split_message(composed.data)[1]
    assert body.endswith(b"=20\r\n=09\r\n\r\n\r\n")  # QP guards whitespace, not empty lines
    assert composed.body_hash == body_hash(body)
