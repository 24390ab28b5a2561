"""Hostile templates: the well-known Jinja2 escapes must not run a command or read the environment.

Every escape is first rendered in a plain ``jinja2.Environment`` (the control), where it must
really create the marker file or print the secret, so a payload that stopped working for
another reason cannot make these tests pass. Then it goes into a campaign's subject, text body
and HTML body, where it must have no effect and fail (if at all) as a TemplateError.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import jinja2
import pytest

from bulkmail.compose.mime import Composer
from bulkmail.compose.render import CampaignView, SubscriberView, TemplateSet
from bulkmail.errors import TemplateError
from tests.unit.test_compose import ANN, CAMPAIGN, SETTINGS, make_template

SECRET = "sandbox-test-secret-4f1c9a"

# {CMD} is a Jinja2 string literal running `touch <marker>`; {E} the environment variable name.
ESCAPES = {
    "cycler globals": "{{ cycler.__init__.__globals__.os.system(CMD) }}",
    "joiner globals": "{{ joiner.__init__.__globals__.os.system(CMD) }}",
    "namespace globals": "{{ namespace.__init__.__globals__.os.system(CMD) }}",
    "lipsum globals": "{{ lipsum.__globals__.os.system(CMD) }}",
    "str mro subclasses": (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() if c.__name__ == '_wrap_close' %}"
        "{{ c.__init__.__globals__.system(CMD) }}{% endfor %}"
    ),
    "range class base subclasses": (
        "{% for c in range.__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close' %}"
        "{{ c.__init__.__globals__.system(CMD) }}{% endfor %}"
    ),
    "self globals builtins import": (
        "{{ self.__init__.__globals__.__builtins__.__import__('os').system(CMD) }}"
    ),
    "context object globals (config-style)": (
        "{{ subscriber.__init__.__globals__.jinja2.utils.os.system(CMD) }}"
    ),
    "context object class (request-style)": (
        "{{ campaign.__class__.__init__.__globals__.__builtins__.__import__('os').system(CMD) }}"
    ),
    "subscript instead of dot": "{{ cycler['__init__']['__globals__']['os'].system(CMD) }}",
    "escaped underscores": "{{ cycler['\\x5f\\x5finit\\x5f\\x5f'].__globals__.os.system(CMD) }}",
    "attr filter": (
        "{{ cycler|attr('__init__')|attr('__globals__')|attr('get')('os')|attr('system')(CMD) }}"
    ),
    "environ through globals": "{{ cycler.__init__.__globals__.os.environ[E] }}",
    "str.format": "{{ ('{0.__init__.__globals__[os].environ[' ~ E ~ ']}').format(cycler) }}",
    "str.format_map": (
        "{{ ('{c.__init__.__globals__[os].environ[' ~ E ~ ']}').format_map({'c': cycler}) }}"
    ),
    "format bound then called": (
        "{% set f = ('{0.__init__.__globals__[os].environ[' ~ E ~ ']}').format %}{{ f(cycler) }}"
    ),
    "format through attr filter": (
        "{{ ('{0.__init__.__globals__[os].environ[' ~ E ~ ']}')|attr('format')(cycler) }}"
    ),
}

# Reach for what the sandbox itself puts in reach (its own range() is a Python function).
PROBES = {
    "sandbox range globals": "{{ range.__globals__.os.system(CMD) }}",
    "range init globals": "{{ range.__init__.__globals__.os.system(CMD) }}",
    "self private context": "{{ self._TemplateReference__context.environment }}",
    "template module": "{{ self.__class__.__module__ }}",
}


def payload(template: str, marker: Path) -> str:
    return template.replace("CMD", repr(f"touch {marker}")).replace("E", "'BULKMAIL_SECRET'")


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKMAIL_SECRET", SECRET)


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_control_every_escape_works_in_a_plain_environment(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "marker"
    context = {"subscriber": SubscriberView(ANN), "campaign": CampaignView(1, "n", "s", "l")}
    out = jinja2.Environment().from_string(payload(ESCAPES[name], marker)).render(context)
    assert marker.exists() or SECRET in out


def render_in(part: str, source: str, tmp_path: Path) -> str:
    """Create the campaign with ``source`` in ``part`` and render it for ANN: all it output."""
    files = {"body_txt": "plain", "body_html": "<p>html</p>"}
    subject = "Hi"
    if part == "subject":
        subject = source
    else:
        files[part] = source
    campaign = replace(CAMPAIGN, subject=subject, template=make_template(tmp_path, **files))
    Composer(campaign, SETTINGS).check()  # what `campaigns create` does
    rendered = TemplateSet(campaign).render(ANN, "https://x.example/u/t")
    return "\n".join((rendered.subject, rendered.text, rendered.html or ""))


@pytest.mark.parametrize("part", ["subject", "body_txt", "body_html"])
@pytest.mark.parametrize("name", sorted(ESCAPES) + sorted(PROBES))
def test_no_escape_runs_or_reads_the_environment(tmp_path: Path, part: str, name: str) -> None:
    marker = tmp_path / "marker"
    source = payload({**ESCAPES, **PROBES}[name], marker)
    try:
        out = render_in(part, source, tmp_path)
    except TemplateError as exc:
        assert "\n" not in str(exc)
        out = str(exc)
    assert not marker.exists(), f"{name} ran a command"
    assert SECRET not in out
    assert "<module" not in out and "<class" not in out


def test_escape_at_creation_is_refused_naming_the_sandbox(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    campaign = replace(
        CAMPAIGN,
        subject=payload(ESCAPES["cycler globals"], marker),
        template=make_template(tmp_path, body_txt="x"),
    )
    with pytest.raises(TemplateError) as caught:
        Composer(campaign, SETTINGS).check()
    assert str(caught.value).startswith("template campaign subject line 1: not allowed")
    assert not marker.exists()


def test_values_given_to_a_template_cannot_be_changed(tmp_path: Path) -> None:
    campaign = replace(
        CAMPAIGN,
        template=make_template(
            tmp_path, body_txt="{{ subscriber.attributes.update({'city': 'Nowhere'}) }}"
        ),
    )
    attributes = {"city": "Oslo"}
    with pytest.raises(TemplateError, match="not allowed"):
        Composer(campaign, SETTINGS).compose(replace(ANN, attributes=attributes))
    assert attributes == {"city": "Oslo"}


def test_ordinary_template_features_still_work(tmp_path: Path) -> None:
    source = (
        "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}"
        "{{ ns.n }} {{ '{:>5}'.format(subscriber.name) }} {{ '%s!' % subscriber.email }} "
        "{{ subscriber.attributes.get('city', 'none') }} {{ subscriber.attributes | length }} "
        "{{ [3, 1, 2] | sort | join(',') }} {{ dict(a=1).items() | list }}"
    )
    text = render_in("body_txt", source, tmp_path)
    assert f"3 {ANN.name:>5} {ANN.email}! Zürich 1 1,2,3 [('a', 1)]" in text


def test_the_environment_is_not_in_reach(tmp_path: Path) -> None:
    assert os.environ["BULKMAIL_SECRET"] == SECRET
    out = render_in("body_txt", "{{ subscriber }} {{ campaign }} {{ self }}", tmp_path)
    assert SECRET not in out


@pytest.mark.parametrize("name", ["../outside.txt", "/../outside.txt", "tpl/../../outside.txt"])
def test_include_cannot_leave_the_template_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.txt").write_text(SECRET)
    with pytest.raises(TemplateError, match="not found"):
        render_in("body_txt", f"{{% include {name!r} %}}", tmp_path)
