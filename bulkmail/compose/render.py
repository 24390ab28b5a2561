"""Jinja2 rendering of a campaign's subject and bodies, compiled once per campaign.

A template is a directory with ``body.html`` and/or ``body.txt`` and optionally
``subject.txt``; a bare name finds a bundled one under the repository's ``templates/``.
``body.html`` is autoescaped; text and subject are not. Templates run sandboxed, undefined
variables are errors, and every Jinja2 failure leaves here as a one-line
:class:`~bulkmail.errors.TemplateError` naming the file and line (see ``environment.py``).

Templates see ``subscriber`` (``.email``, ``.name``, ``.attributes``; an attribute also
reads as ``subscriber.city``), ``campaign`` (``.id``, ``.name``, ``.subject``,
``.list_name``) and ``unsubscribe_url``. ``trim_blocks`` and ``lstrip_blocks`` are on, so a
line holding only a ``{% ... %}`` tag leaves no blank line in a text body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from bulkmail.compose.environment import (
    VIEW_FIELDS,
    Attributes,
    FileNames,
    make_environment,
    template_error,
)
from bulkmail.compose.text import html_template_to_text, html_to_text, tidy_text
from bulkmail.errors import TemplateError
from bulkmail.resources import templates_dir as bundled_resources_dir

__all__ = [
    "CampaignInfo",
    "Recipient",
    "RenderedMessage",
    "TemplateSet",
    "bundled_templates_dir",
    "resolve_template_dir",
    "template_reference",
]

SUBJECT_NAME = "<campaign subject>"  # compiled names; errors show them as in _names()
SUBJECT_FILE_NAME = "<subject.txt>"
TEXT_FROM_HTML_NAME = "<body.html as text>"


@dataclass(frozen=True)
class Recipient:
    """One subscriber to compose for (a value; no database object)."""

    subscriber_id: int
    email: str
    name: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class CampaignInfo:
    """What composing needs to know about a campaign."""

    id: int
    name: str
    subject: str  # a Jinja2 template; empty means: use the template's subject.txt
    from_header: str  # "Name <addr>"
    list_id: int
    list_name: str
    template: str  # a directory path, or the name of a bundled template
    reply_to: str | None = None


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str | None


class SubscriberView:
    """``subscriber`` in templates; unknown names fall back to the attributes mapping."""

    __slots__ = ("email", "name", "attributes", "id")
    _template_name = "subscriber"  # how errors name it (environment.UndefinedVariable)

    def __init__(self, recipient: Recipient) -> None:
        self.id = recipient.subscriber_id
        self.email = recipient.email
        self.name = recipient.name
        self.attributes = Attributes(recipient.attributes)

    def __getitem__(self, key: str) -> Any:
        return self.attributes[key]


@dataclass(frozen=True)
class CampaignView:
    """``campaign`` in templates."""

    _template_name = "campaign"

    id: int
    name: str
    subject: str
    list_name: str


VIEW_FIELDS[SubscriberView] = frozenset(SubscriberView.__slots__)
VIEW_FIELDS[CampaignView] = frozenset(("id", "name", "subject", "list_name"))


def bundled_templates_dir() -> Path:
    """The bundled templates: package ``bulkmail.templates`` (the repository's ``templates/``)."""
    return bundled_resources_dir()


def _has_body(folder: Path) -> bool:
    return (folder / "body.html").is_file() or (folder / "body.txt").is_file()


def resolve_template_dir(template: str, templates_dir: Path | None = None) -> Path:
    """The folder ``template`` names, looked for in this order:

    1. ``template`` as a path (relative to the current folder): an existing folder wins, so
       ``--template tpl`` uses ``./tpl/`` and never a bundled template of the same name;
    2. a bare name under ``templates_dir`` (tests), then under the bundled templates.

    Not found, the error names every place it looked in.
    """
    if not template.strip():
        raise TemplateError("template name is empty: give a folder or a bundled name")
    path = Path(template).expanduser()
    if path.is_dir():
        if _has_body(path):
            return path.resolve()
        raise TemplateError(
            f"template {template!r}: folder {path.resolve()} has no body.html or body.txt"
        )
    candidates = [path.absolute()]
    if not (path.is_absolute() or len(path.parts) > 1 or template.startswith(".")):
        if templates_dir is not None:
            candidates.append(Path(templates_dir) / template)
        candidates.append(bundled_templates_dir() / template)
    for candidate in candidates[1:]:
        if _has_body(candidate):
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise TemplateError(
        f"template {template!r} not found: no folder with body.html or body.txt at {looked}"
    )


def template_reference(template: str) -> str:
    """What a campaign stores for ``template``: a bundled name as it is, anything else as its
    absolute folder, so a send from cron or another folder finds the same template."""
    folder = resolve_template_dir(template)
    if folder == (bundled_templates_dir() / template).resolve():
        return template
    return str(folder)


def _markup_to_text(value: Any) -> Any:
    return html_to_text(value) if isinstance(value, Markup) else value


class TemplateSet:
    """The compiled subject, text and HTML templates of one campaign."""

    def __init__(self, campaign: CampaignInfo, templates_dir: Path | None = None) -> None:
        self.directory = resolve_template_dir(campaign.template, templates_dir)
        self._campaign = campaign
        loader = jinja2.FileSystemLoader(self.directory)
        self._html_env = make_environment(loader, autoescape=True)
        self._text_env = make_environment(loader, autoescape=False)
        self._known = self._names()
        try:
            self._compile()
        except (jinja2.TemplateError, OSError, UnicodeError) as exc:
            raise template_error(exc, self._known) from None

    def _names(self) -> FileNames:
        """How errors name our files: the template as the user gave it."""
        shown = Path(self._campaign.template)
        names = {
            SUBJECT_NAME: "campaign subject",
            SUBJECT_FILE_NAME: str(shown / "subject.txt"),
            TEXT_FROM_HTML_NAME: f"{shown / 'body.html'} (as text)",
        }
        return FileNames(names, str(self.directory), str(shown))

    def _exists(self, name: str) -> bool:
        return (self.directory / name).is_file()

    def _compile(self) -> None:
        self.html = self._html_env.get_template("body.html") if self._exists("body.html") else None
        self.text: jinja2.Template | None = None
        self._text_is_converted = False
        if self._exists("body.txt"):
            self.text = self._text_env.get_template("body.txt")
        elif self.html is not None:
            self.text = self._convert_html_template()
            self._text_is_converted = self.text is not None
        subject, subject_name = self._campaign.subject, SUBJECT_NAME
        if not subject.strip() and self._exists("subject.txt"):
            subject = (self.directory / "subject.txt").read_text(encoding="utf-8").strip()
            subject_name = SUBJECT_FILE_NAME
        if not subject.strip():
            raise TemplateError(
                f"campaign {self._campaign.name!r} has no subject and "
                f"{self.directory / 'subject.txt'} does not exist or is empty"
            )
        self.subject = self._from_string(self._text_env, subject, subject_name)

    @staticmethod
    def _from_string(env: jinja2.Environment, source: str, name: str) -> jinja2.Template:
        code = env.compile(source, name=name, filename=name)
        return env.template_class.from_code(env, code, env.make_globals(None))

    def _convert_html_template(self) -> jinja2.Template | None:
        assert self._html_env.loader is not None
        source, _, _ = self._html_env.loader.get_source(self._html_env, "body.html")
        converted = html_template_to_text(source)
        if converted is None:
            return None
        env = self._text_env.overlay(finalize=_markup_to_text)
        try:
            return self._from_string(env, converted, TEXT_FROM_HTML_NAME)
        except jinja2.TemplateSyntaxError:
            return None  # convert each rendered message instead

    def render(self, recipient: Recipient, unsubscribe_url: str) -> RenderedMessage:
        """Subject, text and HTML for one recipient. Raises TemplateError."""
        campaign = self._campaign
        context: dict[str, Any] = {
            "subscriber": SubscriberView(recipient),
            "campaign": CampaignView(
                campaign.id, campaign.name, campaign.subject, campaign.list_name
            ),
            "unsubscribe_url": unsubscribe_url,
        }
        try:
            subject = self.subject.render(context)
            context["campaign"] = CampaignView(
                campaign.id, campaign.name, subject, campaign.list_name
            )
            html = self.html.render(context) if self.html is not None else None
            if self.text is None:
                assert html is not None
                text = html_to_text(html)
            elif self._text_is_converted:
                text = tidy_text(self.text.render(context))
            else:
                text = self.text.render(context)
        except Exception as exc:  # any failure inside a template is the template's fault
            raise template_error(exc, self._known) from None
        return RenderedMessage(subject, text, html)
