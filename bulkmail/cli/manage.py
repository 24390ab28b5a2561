"""Audience and campaign management: ``subscribers list|show|remove|export``, ``lists
show|rename|delete`` and ``campaigns clone|edit|delete``.

The commands join the ``lists``, ``subscribers`` and ``campaigns`` groups of their neighbours
(``cli.audience``, ``cli.campaigns``); the logic is in ``audience.manage``, ``audience.forget``
and ``campaign_edit``. Destructive commands ask on a terminal and take ``--yes``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bulkmail.audience import forget, manage
from bulkmail.cli.audience import lists, subscribers
from bulkmail.cli.campaigns import campaigns
from bulkmail.cli.confirm import confirm_destructive, yes_option
from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option
from bulkmail.errors import InputError
from bulkmail.reports.terminal import PrintableWriter, printable


def _filters(func: Any) -> Any:
    """The subscriber filters shared by ``list`` and ``export`` (defined once)."""
    for option in reversed(
        [
            click.option("--list", "list_name", default=None, help="Members of this list only."),
            click.option(
                "--state",
                type=click.Choice(manage.MEMBERSHIP_STATES),
                default=None,
                help="Membership state (on --list, or on any list).",
            ),
            click.option(
                "--attribute", default=None, metavar="KEY[=VALUE]", help="Has this attribute."
            ),
            click.option(
                "--suppressed/--not-suppressed",
                default=None,
                help="Only suppressed (or only not suppressed) addresses.",
            ),
        ]
    ):
        func = option(func)
    return func


def _filter(**kw: Any) -> manage.Filter:
    return manage.Filter(kw["list_name"], kw["state"], kw["attribute"], kw["suppressed"])


@subscribers.command("list")
@_filters
@click.option("--after", default=0, type=click.IntRange(0), help="Start after this id (paging).")
@click.option("--limit", default=manage.PAGE, show_default=True, type=click.IntRange(1, 10000))
@json_option
@pass_app
def subscribers_list(app: App, after: int, limit: int, as_json: bool, **kw: Any) -> None:
    """List subscribers by id, one page at a time (--after the last id shown for the next).

    \b
    Example:
      bulkmail subscribers list --list news --state subscribed --attribute city=Oslo
      bulkmail subscribers list --suppressed --after 1200 --limit 50 --json
    """
    rows = manage.list_subscribers(app.ready_db(), _filter(**kw), after, limit)
    more = rows[-1].id if len(rows) == limit else None
    if as_json:
        echo_json({"subscribers": [r.as_dict() for r in rows], "next_after": more})
        return
    for r in rows:
        flag = "  suppressed" if r.suppressed else ""
        click.echo(printable(f"{r.id:>8}  {r.email:<40} {r.name}{flag}"))
    if more is not None:
        click.echo(f"more: --after {more}", err=True)


@subscribers.command("show")
@click.argument("address")
@json_option
@pass_app
def subscribers_show(app: App, address: str, as_json: bool) -> None:
    """Show one subscriber: attributes, memberships, suppressions, recent events.

    \b
    Example:
      bulkmail subscribers show ann@example.com
    """
    d = manage.show_subscriber(app.ready_db(), address)
    if as_json:
        echo_json(d.as_dict())
        return
    sub = d.subscriber
    click.echo(printable(f"{sub['email']} (id {sub['id']}) {sub['name']}"))
    for key, value in sub["attributes"].items():
        click.echo(printable(f"  {key}: {value}"))
    click.echo("lists:" if d.memberships else "lists: none")
    for m in d.memberships:
        click.echo(printable(f"  {m['list']:<30} {m['status']:<13} since {m['since']}"))
    click.echo("suppressed:" if d.suppressions else "suppressed: no")
    for x in d.suppressions:
        click.echo(printable(f"  {x['source']}: {x['reason']} ({x['created_at']})"))
    click.echo("recent events:" if d.events else "recent events: none")
    for e in d.events:
        reply = " ".join(str(v) for v in (e["code"], e["enhanced"], e["text"]) if v)
        click.echo(printable(f"  {e['at']}  {e['kind']:<13} campaign {e['campaign_id']}  {reply}"))


@subscribers.command("remove")
@click.argument("address")
@click.option("--list", "list_name", default=None, help="Only from this list (default: all).")
@click.option(
    "--forget",
    "forget_",
    is_flag=True,
    help="Erase their personal data; keep only a hashed suppression (never mailed again).",
)
@yes_option
@json_option
@pass_app
def subscribers_remove(
    app: App, address: str, list_name: str | None, forget_: bool, yes: bool, as_json: bool
) -> None:
    """Take a subscriber off a list or all lists; --forget erases them (GDPR).

    Without --forget the subscriber and their history stay, and a later import adds them
    again. With --forget their address, name and attributes are erased from subscribers,
    deliveries and events, and only a SHA-256 hash of the address is kept as a suppression,
    so no campaign ever mails it again, even if it is imported anew.

    \b
    Example:
      bulkmail subscribers remove ann@example.com --list news
      bulkmail subscribers remove ann@example.com --forget --yes
    """
    db = app.ready_db()
    if forget_:
        if list_name:
            raise InputError("--forget erases the subscriber everywhere: leave out --list")
        manage.show_subscriber(db, address, events=0)  # NotFoundError before asking
        confirm_destructive(f"Erase {address!r} for good (keeping only a hash)?", yes)
        done = forget.forget_subscriber(db, address)
        if as_json:
            echo_json({"forgotten": True, **done.as_dict()})
        else:
            click.echo(
                f"subscriber {done.subscriber_id} forgotten: {done.memberships} memberships "
                f"removed, {done.deliveries} deliveries and {done.events} events anonymised; "
                "suppressed by hash"
            )
        return
    where = f"list {list_name!r}" if list_name else "every list"
    manage.show_subscriber(db, address, events=0)
    confirm_destructive(f"Remove {address!r} from {where}?", yes)
    left = manage.remove_subscriber(db, address, list_name)
    if as_json:
        echo_json({"removed_from": left})
    else:
        click.echo(printable(f"{address} removed from {', '.join(left)}"))


@subscribers.command("export")
@click.argument("file", default="-", type=click.Path(path_type=Path, allow_dash=True))
@_filters
@pass_app
def subscribers_export(app: App, file: Path, **kw: Any) -> None:
    """Write subscribers as CSV (email, name, one column per attribute); '-' is stdout.

    The file imports back with 'subscribers import'. Cells a spreadsheet would run as a
    formula get a leading quote.

    \b
    Example:
      bulkmail subscribers export --list news news.csv
    """
    db = app.ready_db()
    f = _filter(**kw)
    if str(file) == "-":
        out = PrintableWriter(sys.stdout) if sys.stdout.isatty() else sys.stdout
        count = manage.export_subscribers(db, out, f)  # type: ignore[arg-type]
        click.echo(f"exported {count} subscribers", err=True)
        return
    partial = file.with_name(file.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as fh:
            count = manage.export_subscribers(db, fh, f)
        partial.replace(file)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{file}: cannot write: {exc.strerror}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    click.echo(f"exported {count} subscribers to {file}")


@lists.command("show")
@click.argument("name")
@json_option
@pass_app
def lists_show(app: App, name: str, as_json: bool) -> None:
    """A list's members per state, suppressed members and campaigns.

    \b
    Example:
      bulkmail lists show news
    """
    d = manage.list_details(app.ready_db(), name)
    if as_json:
        echo_json(d)
        return
    click.echo(printable(f"list {d['name']!r} (id {d['id']}, created {d['created_at']})"))
    click.echo(
        f"  subscribed {d['subscribed']}, unsubscribed {d['unsubscribed']}, "
        f"suppressed (of the subscribed) {d['suppressed']}"
    )
    for c in d["campaigns"]:
        click.echo(printable(f"  campaign {c['id']:>4} {c['state']:<10} {c['name']}"))


@lists.command("rename")
@click.argument("name")
@click.argument("new_name")
@pass_app
def lists_rename(app: App, name: str, new_name: str) -> None:
    """Rename a list (its campaigns follow).

    \b
    Example:
      bulkmail lists rename news newsletter
    """
    lst = manage.rename_list(app.ready_db(), name, new_name)
    click.echo(printable(f"list {name!r} renamed to {lst.name!r}"))


@lists.command("delete")
@click.argument("name")
@yes_option
@pass_app
def lists_delete(app: App, name: str, yes: bool) -> None:
    """Delete a list and its memberships; the subscribers stay.

    A list with campaigns is kept (their reports refer to it): delete those first.

    \b
    Example:
      bulkmail lists delete old-list --yes
    """
    db = app.ready_db()
    d = manage.list_details(db, name)
    confirm_destructive(
        f"Delete list {name!r} and its {d['subscribed'] + d['unsubscribed']} memberships?", yes
    )
    n = manage.delete_list(db, name)
    click.echo(printable(f"list {name!r} deleted ({n} memberships)"))


@campaigns.command("clone")
@click.argument("campaign_id", type=int)
@click.option("--name", default=None, help='Name of the copy (default: "NAME (copy)").')
@json_option
@pass_app
def clone(app: App, campaign_id: int, name: str | None, as_json: bool) -> None:
    """Copy a campaign (list, subject, From, Reply-To, template) as a new draft.

    \b
    Example:
      bulkmail campaigns clone 1 --name "June news"
    """
    from bulkmail.campaign_edit import clone_campaign

    c = clone_campaign(app.ready_db(), app.settings, campaign_id, name)
    if as_json:
        echo_json({"id": c.id, "cloned_from": campaign_id})
    else:
        click.echo(f"campaign {c.id} created ({c.state}), a copy of {campaign_id}")


@campaigns.command("edit")
@click.argument("campaign_id", type=int)
@click.option("--name", default=None)
@click.option("--subject", default=None, help="Subject line (a Jinja2 template).")
@click.option("--from", "from_header", default=None, help='"Name <address@domain>".')
@click.option("--reply-to", default=None, help='Reply-To address ("" removes it).')
@click.option("--template", default=None, help="A template folder or a bundled name.")
@click.option("--list", "list_name", default=None, help="Send to another list.")
@json_option
@pass_app
def edit(app: App, campaign_id: int, as_json: bool, **changes: str | None) -> None:
    """Change a campaign before it is sent; the template is checked again.

    \b
    Example:
      bulkmail campaigns edit 1 --subject "May news, corrected" --template ./tpl
    """
    from bulkmail.campaign_edit import edit_campaign

    c = edit_campaign(app.ready_db(), app.settings, campaign_id, **changes)
    if as_json:
        echo_json({"id": c.id, "state": c.state})
    else:
        click.echo(f"campaign {c.id} edited ({c.state})")


@campaigns.command("delete")
@click.argument("campaign_id", type=int)
@yes_option
@pass_app
def delete(app: App, campaign_id: int, yes: bool) -> None:
    """Delete a campaign that was never sent.

    \b
    Example:
      bulkmail campaigns delete 4 --yes
    """
    from bulkmail.campaign_edit import delete_campaign
    from bulkmail.campaigns import get_campaign

    db = app.ready_db()
    c = get_campaign(db, campaign_id)
    confirm_destructive(printable(f"Delete campaign {c.id} {c.name!r} ({c.state})?"), yes)
    delete_campaign(db, campaign_id)
    click.echo(f"campaign {campaign_id} deleted")


COMMANDS: list[click.Command] = []  # the commands above joined their groups
