"""The Jinja2 environments campaign templates run in, and the one-line errors they raise.

Templates and ``--subject`` values are written by whoever creates a campaign, and rendered
inside the process that holds the database URL, the DKIM keys and ``BULKMAIL_SECRET``. A
plain ``jinja2.Environment`` lets ``{{ cycler.__init__.__globals__.os.system('...') }}`` run
a shell command, so templates run in Jinja2's :class:`ImmutableSandboxedEnvironment`:

- no attribute starting with ``_`` and none of Python's internal ones (``func_globals``,
  ``gi_frame``, ``mro`` ...) is reachable, so there is no path from a template value to a
  module, ``os`` or ``os.environ``;
- ``str.format`` / ``format_map`` go through the sandbox's formatter, so
  ``'{0.__class__}'.format(x)`` is refused too;
- lists, dicts and sets cannot be modified in place (``append``, ``update`` ...), so a
  template cannot change the values it was given for the next recipient;
- ``range()`` is capped by the sandbox (100,000 items).

The context holds only ``subscriber``, ``campaign`` and ``unsubscribe_url`` plus Jinja2's
default globals (``range``, ``dict``, ``cycler``, ``joiner``, ``namespace``); nothing in it
reaches the process environment or the settings.

The sandbox costs a check per attribute access and per call. On the bundled newsletter
(CPU time, min of repeats) the plain sandbox doubled rendering, 0.031 -> 0.063 ms a message;
with :class:`CampaignSandbox`'s fast path for our own fields it is 0.032 -> 0.039 ms, and a
whole composed message 0.181 -> 0.190 ms, inside docs/PERFORMANCE.md's 0.17-0.33 ms.

Undefined variables are errors (as with StrictUndefined) whose message names the variable
the way the template spells it (``'subscriber' has no attribute 'nme'``), not a Python class
(``'bulkmail.compose.render.SubscriberView object' ...``); :func:`template_error` adds the
file and line: ``template tpl/body.html line 12: 'subscriber' has no attribute 'nme'``.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import object_type_repr

from bulkmail.errors import TemplateError

__all__ = [
    "VIEW_FIELDS",
    "Attributes",
    "FileNames",
    "TemplateRenderError",
    "UndefinedVariable",
    "make_environment",
    "template_error",
]


class Attributes(dict[str, Any]):
    """``subscriber.attributes``: a dict that knows its name, for error messages."""

    __slots__ = ()
    _template_name = "subscriber.attributes"


# The data fields of bulkmail's own context objects (SubscriberView, CampaignView), filled in
# by render.py: reading them needs no sandbox check (see CampaignSandbox.getattr).
VIEW_FIELDS: dict[type, frozenset[str]] = {}
_DICT_NAMES = frozenset(dir(dict))


class TemplateRenderError(TemplateError):
    """A template failed; ``where`` is "file line N" (or ""), ``detail`` what went wrong."""

    def __init__(self, where: str, detail: str, *, undefined: bool = False) -> None:
        super().__init__(f"template {where}: {detail}" if where else f"template error: {detail}")
        self.where = where
        self.detail = detail
        self.undefined = undefined  # a missing variable: `| default(...)` is the usual fix

    @property
    def variable(self) -> str | None:
        """The missing variable as the template spells it (``subscriber.attributes.city``)."""
        if not self.undefined:
            return None
        if m := _NO_ATTRIBUTE.match(self.detail):
            return f"{m[1]}.{m[2]}"
        if m := _IS_UNDEFINED.match(self.detail):
            return m[1]
        return None


_NO_ATTRIBUTE = re.compile(r"'((?:subscriber|campaign)[\w.]*)' has no attribute '(\w+)'$")
_IS_UNDEFINED = re.compile(r"'(\w+)' is undefined$")


class UndefinedVariable(jinja2.StrictUndefined):
    """StrictUndefined whose message uses the template's names for the objects it reads."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name, obj = self._undefined_name, self._undefined_obj
        if obj is jinja2.utils.missing:
            return f"{name!r} is undefined"
        label = getattr(type(obj), "_template_name", None) or object_type_repr(obj)
        if not isinstance(name, str):
            return f"{label!r} has no element {name!r}"
        return f"{label!r} has no attribute {name!r}"


class CampaignSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with a fast path for the reads every campaign template makes.

    ``subscriber.name``, ``campaign.subject`` (a field of one of our views) and
    ``subscriber.attributes.city`` (a key, not a dict method) return data, never a callable
    or an internal object, so they skip the sandbox's per-access checks, which otherwise
    double the render time of the bundled newsletter. Every other read takes the checked path.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is Attributes and attribute not in _DICT_NAMES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        fields = VIEW_FIELDS.get(kind)
        if fields is not None and attribute in fields:
            return object.__getattribute__(obj, attribute)
        return super().getattr(obj, attribute)


def make_environment(loader: jinja2.BaseLoader | None, *, autoescape: bool) -> jinja2.Environment:
    """A sandboxed environment for campaign templates (HTML autoescaped, text not)."""
    env = CampaignSandbox(
        loader=loader,
        autoescape=autoescape,
        undefined=UndefinedVariable,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals.pop("lipsum", None)  # nothing a campaign needs; one less object in reach
    return env


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class FileNames:
    """How errors name a template's files: the template as the user gave it, not our paths."""

    fixed: Mapping[str, str]  # compiled name (a path, "<campaign subject>") -> name shown
    folder: str = ""  # the template folder on disk; files under it (includes) are shown ...
    shown: str = ""  # ... under this name

    def show(self, filename: str | None) -> str | None:
        if filename is None:
            return None
        if filename in self.fixed:
            return self.fixed[filename]
        if self.folder and filename.startswith(self.folder + os.sep):
            return self.shown + filename[len(self.folder) :]
        return None


def _where(filename: str | None, lineno: int | None, names: FileNames) -> str:
    shown = names.show(filename) or filename or ""
    return f"{shown} line {lineno}" if shown and lineno else shown


def template_error(exc: BaseException, names: FileNames) -> TemplateRenderError:
    """A one-line error for ``exc``, naming the innermost template file and line it came from."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = _where(exc.filename or exc.name, exc.lineno, names)
        return TemplateRenderError(where, _one_line(exc.message or exc))
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if names.show(frame.filename) is not None:
            where = _where(frame.filename, frame.lineno, names)
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateRenderError(where, f"template not found: {exc.name}")
    if isinstance(exc, SecurityError):
        return TemplateRenderError(where, f"not allowed in a template: {_one_line(exc)}")
    if isinstance(exc, jinja2.UndefinedError):
        return TemplateRenderError(where, _one_line(exc), undefined=True)
    kind = "" if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: "
    return TemplateRenderError(where, f"{kind}{_one_line(exc)}")
