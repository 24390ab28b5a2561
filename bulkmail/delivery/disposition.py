"""From one attempt's reply to the delivery's next state (pure).

``classify_reply`` says what a reply means; this module turns that into the row to write:
the state, when to try again (``retry.next_attempt_at``), whether to append an event, and
whether the address goes on the suppression list. No I/O, a clock passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bulkmail.db.models import BOUNCED, DEFERRED, EXPIRED, FAILED, SENT
from bulkmail.db.queries import Claimed, Result
from bulkmail.delivery.classify import Disposition, Reply, classify_reply
from bulkmail.delivery.retry import next_attempt_at
from bulkmail.delivery.taxonomy import judged_note
from bulkmail.delivery.tlspolicy import TlsState


@dataclass(frozen=True)
class RetryPolicy:
    intervals: tuple[float, ...]
    max_age: float
    jitter: float = 0.1


def decide(
    item: Claimed,
    reply: Reply,
    *,
    mx_host: str | None,
    tls: str | None,
    now: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
    tls_state: TlsState | None = None,
    stage: str | None = None,
) -> Result:
    """The Result of ``item``'s attempt that ended with ``reply`` (over ``tls_state``).

    ``stage`` is the command the reply answered (``transport.Outcome.stage``): a bare "User
    unknown" after DATA is a filter's answer, not a bad address (``delivery.taxonomy``), and
    the recorded text says it was so judged, so every later reading of it agrees."""
    at_rcpt = {"rcpt": True, "data": False, "dot": False}.get(stage or "")
    verdict = classify_reply(reply, at_rcpt)
    text = reply.text
    if at_rcpt is not None and verdict.bounce_class is not classify_reply(reply).bounce_class:
        why = "as refused at RCPT TO" if at_rcpt else "as refused after DATA"
        text += judged_note(verdict.bounce_class, why)
    state, next_at, event, suppress = SENT, None, None, False
    if verdict.disposition is Disposition.SENT:
        state, event = SENT, "sent"  # in the event log too: events export, webhooks
    elif verdict.disposition is Disposition.DEFERRED:
        next_at = next_attempt_at(
            now,
            item.attempts,
            item.first_attempt_at,
            policy.intervals,
            policy.max_age,
            verdict.retry_after,
            policy.jitter,
            rng or random,
        )
        state, event = (DEFERRED, "deferred") if next_at is not None else (EXPIRED, "expired")
    elif verdict.disposition is Disposition.BOUNCED:
        state, event, suppress = BOUNCED, "bounced", verdict.suppress
    elif verdict.disposition is Disposition.EXPIRED:
        state, event = EXPIRED, "expired"
    else:
        state, event = FAILED, "failed"
    return Result(
        delivery_id=item.id,
        campaign_id=item.campaign_id,
        subscriber_id=item.subscriber_id,
        email=item.email,
        state=state,
        attempt=item.attempts,
        next_attempt_at=next_at,
        code=reply.code,
        enhanced=reply.enhanced,
        text=text[:1000],
        mx_host=mx_host,
        tls=tls,
        event=event,
        suppress=suppress,
        tls_version=tls_state.version if tls_state is not None and tls_state.used else None,
        tls_authenticated=tls_state.auth != "none" if tls_state is not None else None,
        tls_auth=tls_state.auth if tls_state is not None else None,
        tls_failure=tls_state.failure if tls_state is not None else None,
    )


def failed(item: Claimed, reason: str) -> Result:
    """A delivery that cannot be attempted at all (its message cannot be built)."""
    return Result(
        delivery_id=item.id,
        campaign_id=item.campaign_id,
        subscriber_id=item.subscriber_id,
        email=item.email,
        state=FAILED,
        attempt=item.attempts,
        next_attempt_at=None,
        code=None,
        enhanced=None,
        text=reason[:1000],
        mx_host=None,
        tls=None,
        event="failed",
    )
