"""Changing campaigns after ``create``: clone, edit and delete.

A campaign may be edited or deleted only before it is sent: while it has no deliveries and
was never enqueued. The check and the change are one statement (``UPDATE``/``DELETE ... WHERE
NOT EXISTS (deliveries)``), so a ``send`` starting in another shell at the same moment either
sees the edited campaign or makes the edit fail; it never sends half of an edit. An edit is
checked as ``create`` checks (From, Reply-To, the template rendered for the list's members),
and a clone is a new draft made by ``create_campaign`` itself, so it is checked the same way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, delete, exists, select, update

from bulkmail.audience.lists import find_list
from bulkmail.campaigns import (
    _CHECK_SECRET,
    campaign_info,
    compose_settings,
    create_campaign,
    get_campaign,
    parse_from,
)
from bulkmail.compose.mime import Composer
from bulkmail.compose.render import template_reference
from bulkmail.config import Settings
from bulkmail.db.engine import Database
from bulkmail.db.models import (
    CAMPAIGN_CANCELLED,
    DRAFT,
    MISSED,
    PAUSED,
    SCHEDULED,
    Campaign,
    Delivery,
    MailingList,
)
from bulkmail.errors import InputError
from bulkmail.template_check import check_against_members

EDITABLE = (DRAFT, SCHEDULED, MISSED, PAUSED)
DELETABLE = (*EDITABLE, CAMPAIGN_CANCELLED)


def _unsent(states: tuple[str, ...]) -> Any:
    no_deliveries = ~exists().where(Delivery.campaign_id == Campaign.id)
    return Campaign.state.in_(states) & (Campaign.enqueued == False) & no_deliveries  # noqa: E712


def _refuse(c: Campaign, what: str) -> InputError:
    return InputError(
        f"campaign {c.id} is {c.state} and has been sent to (or is being sent): it can no "
        f"longer be {what}; clone it instead ('bulkmail campaigns clone {c.id}')"
    )


def clone_campaign(
    db: Database, settings: Settings, campaign_id: int, name: str | None = None
) -> Campaign:
    """A new draft with the campaign's list, subject, From, Reply-To and template."""
    c = get_campaign(db, campaign_id)
    with db.session() as s:
        list_name = s.scalar(select(MailingList.name).where(MailingList.id == c.list_id))
    return create_campaign(
        db,
        settings,
        name=name if name is not None else f"{c.name} (copy)",
        list_name=list_name or "",
        subject=c.subject,
        from_header=c.from_header,
        template=c.template,
        reply_to=c.reply_to,
    )


def edit_campaign(
    db: Database, settings: Settings, campaign_id: int, **changes: str | None
) -> Campaign:
    """Change any of name, subject, from_header, reply_to, template, list_name (None: keep).

    ``reply_to=""`` removes the Reply-To. Refused once the campaign has deliveries."""
    c = get_campaign(db, campaign_id)
    if c.state not in EDITABLE or c.enqueued:
        raise _refuse(c, "edited")
    values: dict[str, Any] = {}
    if changes.get("name") is not None:
        if not str(changes["name"]).strip():
            raise InputError("--name must not be empty")
        values["name"] = str(changes["name"]).strip()
    if changes.get("subject") is not None:
        values["subject"] = changes["subject"]
    if changes.get("from_header") is not None:
        parse_from(str(changes["from_header"]))
        values["from_header"] = changes["from_header"]
    if changes.get("reply_to") is not None:
        if changes["reply_to"]:
            parse_from(str(changes["reply_to"]))
        values["reply_to"] = changes["reply_to"] or None
    if changes.get("template") is not None:
        values["template"] = template_reference(str(changes["template"]))
    list_name = changes.get("list_name")
    lst = find_list(db, list_name) if list_name else None
    if lst is not None:
        values["list_id"] = lst.id
    if not values:
        raise InputError(
            "nothing to change: give --name, --subject, --from, --reply-to, --template or --list"
        )
    draft = Campaign(**{**_fields(c), **values})
    if lst is None:
        lst = _list_of(db, draft.list_id)
    composer = Composer(
        campaign_info(draft, lst.name),
        compose_settings(settings, draft.from_header, _CHECK_SECRET),
    )
    check_against_members(db, composer, lst.id, lst.name)
    with db.session() as s:
        res = s.execute(
            update(Campaign).where(Campaign.id == c.id, _unsent(EDITABLE)).values(values)
        )
    if not isinstance(res, CursorResult) or res.rowcount != 1:
        raise _refuse(get_campaign(db, campaign_id), "edited")
    return get_campaign(db, campaign_id)


def _fields(c: Campaign) -> dict[str, Any]:
    keys = ("id", "name", "subject", "from_header", "reply_to", "template", "list_id")
    return {k: getattr(c, k) for k in keys}


def _list_of(db: Database, list_id: int) -> MailingList:
    with db.session() as s:
        lst = s.get(MailingList, list_id)
    assert lst is not None  # a campaign's list cannot be deleted (manage.delete_list)
    return lst


def delete_campaign(db: Database, campaign_id: int) -> Campaign:
    """Delete a campaign that was never sent; returns what it was."""
    c = get_campaign(db, campaign_id)
    with db.session() as s:
        res = s.execute(delete(Campaign).where(Campaign.id == c.id, _unsent(DELETABLE)))
    if not isinstance(res, CursorResult) or res.rowcount != 1:
        raise _refuse(get_campaign(db, campaign_id), "deleted")
    return c
