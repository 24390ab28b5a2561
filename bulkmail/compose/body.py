"""Quoted-printable bodies and their DKIM form, line by line, encoding only what is new.

The messages of one campaign differ in a few lines of a body (the greeting, the city, the
address and unsubscribe link in the footer); the other few hundred lines are the same for
every recipient. Quoted-printable encoding (``binascii.b2a_qp``) and relaxed DKIM body
canonicalisation were the largest costs of composing after the RSA signature, and both work
line by line, so :class:`BodyEncoder` keeps the encoded and canonical bytes of each line it
has seen and per message encodes only the lines it has not. The result is byte for byte that
of encoding and canonicalising the whole text (tests/unit/test_body_encoding.py checks that as
a property), and the memory it keeps is bounded.

Why line by line is exact: ``b2a_qp`` restarts its line-length count and its trailing-space
rule at every line end and looks no further than the line end; the ``From `` guard looks at
line starts; relaxed canonicalisation (WSP runs to one SP, none at the end of a line) works
within a line, and only "no empty lines at the end" needs the whole body, which the caller
applies to the last piece. A long line holding a personalised value is simply a line not seen
before: such a template (minified HTML on one line) gains nothing, but loses nothing either.
"""

from __future__ import annotations

import binascii

from bulkmail.signing.dkim import canonicalize_lines

__all__ = ["BodyEncoder", "qp_encode"]

_MAX_LINES = 4096  # lines remembered (plus one message's); then the memory starts afresh
_MAX_BYTES = 4 << 20  # bytes remembered, keys and values (plus one message's)


def _normalised(text: str) -> bytes:
    """``text`` as UTF-8 with LF line ends, ending in LF."""
    data = text.encode("utf-8", "replace")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    return data


def _guard_from(encoded: bytes) -> bytes:
    """``From `` at a line start becomes ``=46rom ``: mbox-style stores would mangle it."""
    if b"From " in encoded:
        encoded = encoded.replace(b"\r\nFrom ", b"\r\n=46rom ")
        if encoded.startswith(b"From "):
            encoded = b"=46" + encoded[1:]
    return encoded


def qp_encode(text: str) -> bytes:
    """``text`` as UTF-8 quoted-printable with CRLF line ends, ending in CRLF (from scratch)."""
    data = _normalised(text)
    return _guard_from(binascii.b2a_qp(data.replace(b"\n", b"\r\n"), quotetabs=False, istext=True))


def _encode_line(line: bytes) -> bytes:
    """One source line (without its LF) as quoted-printable, soft breaks included, CRLF end."""
    return _guard_from(binascii.b2a_qp(line + b"\r\n", quotetabs=False, istext=True))


class BodyEncoder:
    """Quoted-printable and relaxed-canonical bytes of body texts, reusing lines seen before.

    One per campaign (per :class:`~bulkmail.compose.mime.Composer`): its lines repeat. Used
    from one thread (the worker's event loop); another thread would only make it slower.
    """

    def __init__(self) -> None:
        self._qp: dict[bytes, bytes] = {}
        self._canonical: dict[bytes, bytes] = {}
        self._bytes = 0

    def encode(self, text: str) -> tuple[bytes, bytes]:
        """(``qp_encode(text)``, ``canonicalize_lines`` of it), the second without the
        end-of-body rule (:func:`~bulkmail.signing.dkim.strip_trailing_empty_lines`)."""
        lines = _normalised(text).split(b"\n")
        lines.pop()  # the text ends in LF: nothing after it
        if self._bytes > _MAX_BYTES or len(self._qp) > _MAX_LINES:
            # Mostly lines of earlier recipients; the campaign's own come back at once.
            self._qp.clear()
            self._canonical.clear()
            self._bytes = 0
        known = self._qp.get
        encoded = list(map(known, lines))  # at C speed; only the misses cost Python
        if None in encoded:
            index = -1
            try:
                while True:
                    index = encoded.index(None, index + 1)
                    encoded[index] = known(lines[index]) or self._learn(lines[index])
            except ValueError:  # no more misses
                pass
        qp = b"".join(encoded)  # type: ignore[arg-type]
        try:  # every line is known by now, unless another thread just cleared the memory
            return qp, b"".join(map(self._canonical.__getitem__, lines))
        except KeyError:
            return qp, canonicalize_lines(qp)

    def _learn(self, line: bytes) -> bytes:
        qp = _encode_line(line)
        canon = canonicalize_lines(qp)
        self._qp[line] = qp
        self._canonical[line] = canon
        self._bytes += len(line) + len(qp) + (len(canon) if canon is not qp else 0)
        return qp
