"""The unsubscribe endpoint's HTTP behaviour (RFC 8058), over an in-memory backend."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from bulkmail.audience.unsubscribe import Target, UnsubscribeOutcome
from bulkmail.compose.tokens import make_token, parse_token
from bulkmail.config import parse_settings
from bulkmail.errors import ConfigError, DatabaseError
from bulkmail.web.app import create_app, mask_email, route_path
from bulkmail.web.server import app_path

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; httpx works the same here
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

SECRET = b"unit-test-secret-0123456789"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


class MemoryBackend:
    """Targets by (campaign, subscriber); records every unsubscribe call."""

    def __init__(self) -> None:
        self.targets: dict[tuple[int, int], Target] = {}
        self.calls: list[tuple[str, str]] = []
        self.broken = False

    def add(self, campaign_id: int, subscriber_id: int, list_name: str = "News") -> str:
        self.targets[(campaign_id, subscriber_id)] = Target(
            campaign_id, subscriber_id, f"person{subscriber_id}@example.com", 1, list_name, True
        )
        return make_token(SECRET, campaign_id, subscriber_id)

    def lookup(self, token: str) -> Target | None:
        if self.broken:
            raise DatabaseError("database is unreachable")
        ids = parse_token(SECRET, token)
        return self.targets.get(ids) if ids else None

    def unsubscribe(self, token: str, source: str) -> UnsubscribeOutcome | None:
        target = self.lookup(token)
        if target is None:
            return None
        self.calls.append((token, source))
        self.targets[(target.campaign_id, target.subscriber_id)] = replace(target, subscribed=False)
        return UnsubscribeOutcome(target, target.subscribed)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(backend: MemoryBackend) -> TestClient:
    return TestClient(create_app(backend, "/unsubscribe/{token}"), base_url="https://news.test")


def test_one_click_post_unsubscribes_and_answers_200(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = backend.add(7, 42)
    r = client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert r.status_code == 200
    assert backend.calls == [(token, "one-click")]
    assert "unsubscribed from News" in r.text


def test_multipart_one_click_post_unsubscribes(client: TestClient, backend: MemoryBackend) -> None:
    token = backend.add(7, 42)
    r = client.post(f"/unsubscribe/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.request.headers["content-type"].startswith("multipart/form-data")
    assert r.status_code == 200
    assert backend.calls == [(token, "one-click")]


def test_post_without_content_type_is_read_as_form_encoded(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = backend.add(7, 42)
    r = client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert r.status_code == 200
    assert len(backend.calls) == 1


def test_get_shows_a_confirmation_page_and_changes_nothing(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = backend.add(7, 42)
    for _ in range(3):  # a link scanner may fetch it any number of times
        r = client.get(f"/unsubscribe/{token}")
        assert r.status_code == 200
        assert client.head(f"/unsubscribe/{token}").status_code == 200
    assert backend.calls == []
    assert '<form method="post">' in r.text
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text


def test_the_confirmation_button_posts_the_one_click_body(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = backend.add(7, 42)
    page = client.get(f"/unsubscribe/{token}").text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', page))
    r = client.post(f"/unsubscribe/{token}", data=fields)  # what a browser submits
    assert r.status_code == 200
    assert backend.calls == [(token, "page")]


def test_a_member_who_left_sees_no_button(client: TestClient, backend: MemoryBackend) -> None:
    token = backend.add(7, 42)
    client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    page = client.get(f"/unsubscribe/{token}").text
    assert "not subscribed" in page
    assert "<form" not in page


def test_unsubscribing_twice_answers_200_again(client: TestClient, backend: MemoryBackend) -> None:
    token = backend.add(7, 42)
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"List-Unsubscribe=Yes",
        b"unsubscribe=1",
        b'{"List-Unsubscribe": "One-Click"}',
        b"List-Unsubscribe=one-click",
        b"\xff\xfe",
    ],
)
def test_a_post_without_the_one_click_body_is_400_and_changes_nothing(
    client: TestClient, backend: MemoryBackend, body: bytes
) -> None:
    token = backend.add(7, 42)
    r = client.post(f"/unsubscribe/{token}", content=body, headers=FORM)
    assert r.status_code == 400
    assert backend.calls == []


def test_an_oversized_body_is_refused(client: TestClient, backend: MemoryBackend) -> None:
    token = backend.add(7, 42)
    body = b"List-Unsubscribe=One-Click&pad=" + b"x" * 100_000
    assert client.post(f"/unsubscribe/{token}", content=body, headers=FORM).status_code == 413
    assert backend.calls == []


def _tokens_that_name_no_one(backend: MemoryBackend) -> list[str]:
    good = backend.add(7, 42)
    return [
        good[:-1],  # truncated
        good[:-1] + ("a" if good[-1] != "a" else "b"),  # forged MAC
        make_token(b"another-secret-0123456789", 7, 42),  # someone else's secret
        make_token(SECRET, 7, 43),  # valid MAC, no such subscriber
        "<script>alert(1)</script>",
        "x" * 500,
    ]


def test_a_forged_truncated_or_unknown_token_gets_one_404_that_reveals_nothing(
    client: TestClient, backend: MemoryBackend
) -> None:
    pages = set()
    for bad in _tokens_that_name_no_one(backend):
        for r in (
            client.get(f"/unsubscribe/{bad}"),
            client.post(f"/unsubscribe/{bad}", data=ONE_CLICK),
        ):
            assert r.status_code == 404, bad
            assert bad not in r.text
            pages.add(r.text)
    assert len(pages) == 1
    assert backend.calls == []


def test_every_answer_is_uncached_and_sets_no_cookie(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = backend.add(7, 42)
    answers = [
        client.get(f"/unsubscribe/{token}"),
        client.get("/unsubscribe/nope"),
        client.post(f"/unsubscribe/{token}", content=b"", headers=FORM),
        client.post(f"/unsubscribe/{token}", data=ONE_CLICK),
        client.get("/elsewhere"),
        client.put(f"/unsubscribe/{token}"),
    ]
    assert [r.status_code for r in answers] == [200, 404, 400, 200, 404, 405]
    for r in answers:
        assert "set-cookie" not in r.headers
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_names_on_the_pages_are_escaped(client: TestClient, backend: MemoryBackend) -> None:
    token = backend.add(7, 42, list_name='<script>alert("x")</script>')
    for r in (
        client.get(f"/unsubscribe/{token}"),
        client.post(f"/unsubscribe/{token}", data=ONE_CLICK),
    ):
        assert "<script>" not in r.text
        assert "&lt;script&gt;" in r.text


def test_the_pages_show_the_address_masked(client: TestClient, backend: MemoryBackend) -> None:
    token = backend.add(7, 42)
    page = client.get(f"/unsubscribe/{token}").text
    assert "person42@example.com" not in page
    assert "p…@example.com" in page


def test_a_storage_failure_answers_503_so_the_client_retries(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = backend.add(7, 42)
    backend.broken = True
    r = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "60"
    assert "database" not in r.text


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://news.example/unsubscribe", "/unsubscribe/{token}"),
        ("https://news.example/unsubscribe/", "/unsubscribe/{token}"),
        ("https://news.example", "/{token}"),
        ("http://127.0.0.1:8080/u/{token}/confirm", "/u/{token}/confirm"),
    ],
)
def test_the_route_is_the_path_of_the_configured_url(url: str, path: str) -> None:
    assert route_path(url) == path
    assert app_path(parse_settings({"unsubscribe": {"url": url}}, "t.toml")) == path


@pytest.mark.parametrize(
    "url", ["ftp://x.example/u", "https://x.example/u?a=1", "https://x.example/{id}", "unsubscribe"]
)
def test_an_unusable_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="unsubscribe.url"):
        app_path(parse_settings({"unsubscribe": {"url": url}}, "t.toml"))


def test_a_route_under_a_templated_url_matches_the_composer_link(backend: MemoryBackend) -> None:
    token = backend.add(7, 42)
    client = TestClient(create_app(backend, route_path("https://x.example/u/{token}/go")))
    assert client.post(f"/u/{token}/go", data=ONE_CLICK).status_code == 200


def test_mask_email_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_email("john.doe@example.com") == "j…@example.com"
    assert mask_email("broken") == "…"


def test_pages_come_from_the_templates_folder(tmp_path: Path, backend: MemoryBackend) -> None:
    for name in ("confirm.html", "done.html", "invalid.html", "error.html"):
        (tmp_path / name).write_text(f"custom {name} {{{{ list_name | default('') }}}}")
    token = backend.add(7, 42)
    client = TestClient(create_app(backend, "/u/{token}", templates_dir=tmp_path))
    assert client.get(f"/u/{token}").text == "custom confirm.html News"
