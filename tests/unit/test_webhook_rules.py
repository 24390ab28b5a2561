"""Webhook signatures, retry delays and event filters (pure)."""

from __future__ import annotations

import hashlib
import hmac

from bulkmail.webhooks.outbox import Targets, delivery_type
from bulkmail.webhooks.sender import retry_delay
from bulkmail.webhooks.signature import sign, verify

SECRET = b"hook-secret-0123456789"
BODY = b'{"id":"evt_1","type":"delivery.sent"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    digest = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, 1700000000) == f"t=1700000000,v1={digest}"


def test_a_signature_verifies_within_the_tolerance_only() -> None:
    header = sign(SECRET, BODY, 1700000000)
    assert verify(SECRET, BODY, header, now=1700000100)
    assert not verify(SECRET, BODY, header, now=1700000000 + 301)  # a replay, too late
    assert not verify(SECRET, BODY, header, now=1700000000 - 301)


def test_a_changed_body_wrong_secret_or_mangled_header_does_not_verify() -> None:
    header = sign(SECRET, BODY, 1700000000)
    assert not verify(SECRET, BODY + b" ", header, now=1700000000)
    assert not verify(b"another-secret-000000", BODY, header, now=1700000000)
    assert not verify(SECRET, BODY, header.replace("t=", "x="), now=1700000000)
    assert not verify(SECRET, BODY, "", now=1700000000)


def test_any_v1_entry_may_match_while_a_secret_is_rotated() -> None:
    old = sign(b"old-secret-00000000000", BODY, 1700000000).split(",")[1]
    header = sign(SECRET, BODY, 1700000000) + "," + old
    assert verify(SECRET, BODY, header, now=1700000000)
    assert verify(b"old-secret-00000000000", BODY, header, now=1700000000)


def test_retry_delay_doubles_up_to_the_maximum() -> None:
    assert [retry_delay(n, 10, 3600, 1.0) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay(20, 10, 3600, 1.0) == 3600
    assert retry_delay(1, 10, 3600, 1.1) == 11.0


def test_event_filters_take_exact_types_and_prefixes() -> None:
    every = Targets(("http://x",))
    assert every.wants("delivery.sent") and every.wants("campaign.paused")
    some = Targets(("http://x",), ("delivery.bounced", "campaign.*"))
    assert some.wants("delivery.bounced") and some.wants("campaign.finished")
    assert not some.wants("delivery.sent") and not some.wants("campaigns.x")


def test_unsubscribes_are_subscriber_events_the_rest_delivery_events() -> None:
    assert delivery_type("unsubscribed") == "subscriber.unsubscribed"
    assert delivery_type("complained") == "delivery.complained"
