"""HTML to plain text, for templates that ship only ``body.html``.

A ``multipart/alternative`` message should carry a text part that says the same as the HTML
(spam filters and text-only readers look at it). :func:`html_to_text` turns HTML into
readable text with the stdlib ``html.parser``: paragraphs and headings become blank-line
separated blocks, list items get ``-`` or ``1.`` markers, links read ``text (url)``,
images their alt text, and scripts, styles and all tags disappear.

Parsing HTML for every message would cost more than the rest of composing it, so
:func:`html_template_to_text` converts the *template* once per campaign: Jinja constructs are
swapped for placeholders, the HTML is converted, and the constructs are put back, giving a
text template that renders the same content. When that cannot be done safely (a Jinja
statement inside a tag, ``{% raw %}``) it returns None and the caller converts each rendered
message instead.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "html_template_to_text", "tidy_text"]

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_PARAGRAPH = frozenset(
    {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "blockquote",
        "pre",
        "dl",
        "figure",
        "header",
        "footer",
        "section",
        "article",
        "address",
    }
)
_LINE = frozenset({"div", "tr", "li", "dt", "dd", "center", "caption", "nav", "main"})
_CELL = frozenset({"td", "th"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr"})
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


class _TextWriter(HTMLParser):
    """Collects text with block structure; whitespace is collapsed outside ``<pre>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._newlines = 0  # newlines owed before the next text
        self._space = False  # a space owed before the next text
        self._skip = 0
        self._pre = 0
        self._lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
        self._links: list[tuple[str, int]] = []  # (href, index in out where the text began)

    # -- output primitives -------------------------------------------------------------
    def _block(self, newlines: int) -> None:
        if self.out:
            self._newlines = max(self._newlines, newlines)
        self._space = False

    def _emit(self, text: str) -> None:
        if self._newlines:
            self.out.append("\n" * self._newlines)
            self._newlines = 0
        elif self._space and self.out:
            self.out.append(" ")
        self._space = False
        self.out.append(text)

    # -- parser callbacks --------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += tag not in _VOID
            return
        if self._skip:
            return
        if tag in _PARAGRAPH:
            self._block(2)
            if tag == "pre":
                self._pre += 1
            elif tag in ("ul", "ol"):
                self._lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._block(1)
            self._emit("  " * max(len(self._lists) - 1, 0) + self._bullet())
            self._space = False
        elif tag in _LINE:
            self._block(1)
        elif tag in _CELL:
            self._space = True
        elif tag == "br":
            self._emit("")
            self._newlines = 1
        elif tag == "hr":
            self._block(2)
            self._emit("-" * 40)
            self._block(2)
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._emit(" ".join(alt.split()))
        elif tag == "a":
            self._links.append(((dict(attrs).get("href") or "").strip(), len(self.out)))

    def _bullet(self) -> str:
        if self._lists and self._lists[-1]:
            number = self._lists[-1][0]
            self._lists[-1][0] += 1
            return f"{number}. "
        return "- "

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(self._skip - 1, 0)
            return
        if self._skip:
            return
        if tag in _PARAGRAPH:
            if tag == "pre":
                self._pre = max(self._pre - 1, 0)
            elif tag in ("ul", "ol") and self._lists:
                self._lists.pop()
            self._block(2)
        elif tag in _LINE:
            self._block(1)
        elif tag in _CELL:
            self._space = True
        elif tag == "a" and self._links:
            self._end_link(*self._links.pop())

    def _end_link(self, href: str, start: int) -> None:
        text = "".join(self.out[start:]).strip()
        if not href or href.startswith(("#", "javascript:")):
            return
        shown = href[7:].split("?")[0] if href.lower().startswith("mailto:") else href
        if text in (href, shown):
            return
        self._space = self._space or bool(text)
        self._emit(f"({shown})" if text else shown)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self._emit(data)
            return
        words = data.split()
        if not words:
            self._space = self._space or bool(data)
            return
        if data[0].isspace():
            self._space = True
        self._emit(" ".join(words))
        self._space = data[-1].isspace()


def tidy_text(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    text = _BLANK_RUNS.sub("\n\n", _TRAILING_SPACE.sub("\n", text)).strip("\n")
    return text + "\n" if text else ""


def html_to_text(html: str) -> str:
    """Readable plain text for ``html`` (a document or a fragment)."""
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    return tidy_text("".join(writer.out))


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(_OPEN + r"(\d+)" + _CLOSE)
_LITERAL_BRACE = re.compile(r"\{(?=[{%#" + _OPEN + "])")


def html_template_to_text(source: str) -> str | None:
    """A Jinja text template equivalent to the Jinja HTML template ``source``, or None.

    Expressions are kept wherever their output would appear as text (also inside ``href``);
    statements must all survive, otherwise the result would not be the same program and
    None is returned.
    """
    if _OPEN in source or _CLOSE in source or re.search(r"\{%-?\s*raw\b", source):
        return None
    constructs: list[str] = []
    index: dict[str, int] = {}

    def hide(match: re.Match[str]) -> str:
        construct = match[0]
        if construct not in index:
            index[construct] = len(constructs)
            constructs.append(construct)
        return f"{_OPEN}{index[construct]}{_CLOSE}"

    hidden = _JINJA.sub(hide, source)
    text = html_to_text(hidden)
    for number, construct in enumerate(constructs):
        if construct.startswith("{%"):
            marker = f"{_OPEN}{number}{_CLOSE}"
            if text.count(marker) != hidden.count(marker):
                return None
    text = _LITERAL_BRACE.sub('{{ "{" }}', text)
    return _PLACEHOLDER.sub(lambda m: constructs[int(m[1])], text)
