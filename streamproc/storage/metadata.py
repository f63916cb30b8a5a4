"""Object metadata that survives S3's rules: ASCII header values, 2 KB in all.

S3 (and MinIO) send user metadata as ``x-amz-meta-*`` HTTP headers: values must be ASCII,
surrounding whitespace is lost, and keys plus values may not exceed 2 KB together. A video's
metadata carries a prompt-derived JSON document (the negative prompt may be long and in any
script), so values are percent-encoded (RFC 3986 style, printable ASCII kept as is) and, when
the whole is too large, the longest values are cut and their names listed under ``truncated``.
Keys become lower-case with hyphens (``event_id`` → ``event-id``): proxies drop headers with
underscores.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from urllib.parse import quote, unquote

#: S3 counts the UTF-8 bytes of every key and value of user metadata against 2 KB.
METADATA_LIMIT = 2000
TRUNCATED = "truncated"

# Printable ASCII except space (trimmed by HTTP) and '%' (the escape character itself).
_SAFE = "".join(c for c in string.punctuation if c != "%")


def encode_metadata(values: Mapping[str, str], limit: int = METADATA_LIMIT) -> dict[str, str]:
    """``values`` as S3 user metadata: ASCII, at most ``limit`` bytes of keys and values.

    Raises ``ValueError`` when the keys alone do not fit.
    """
    plain = {_key(name): value for name, value in values.items()}
    out = {name: _encode(value) for name, value in plain.items()}
    cut: list[str] = []
    while (over := _size(out) + _marker_size(cut) - limit) > 0:
        name = max(out, key=lambda k: len(out[k]))
        if name not in cut:
            cut.append(name)
            over = _size(out) + _marker_size(cut) - limit
        if not out[name]:
            raise ValueError("metadata keys alone exceed the size limit")
        out[name] = _encoded_prefix(plain[name], max(len(out[name]) - over, 0))
    if cut:
        out[TRUNCATED] = ",".join(sorted(cut))
    return out


def decode_metadata(values: Mapping[str, str]) -> dict[str, str]:
    """The readable form of metadata written by :func:`encode_metadata` (keys stay hyphenated)."""
    return {name: unquote(value) for name, value in values.items()}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower()) or "-"


def _size(values: Mapping[str, str]) -> int:
    return sum(len(k) + len(v) for k, v in values.items())


def _marker_size(cut: list[str]) -> int:
    return len(TRUNCATED) + len(",".join(cut)) if cut else 0


def _encode(value: str) -> str:
    # errors="replace": a lone surrogate cannot be UTF-8; it must not fail the upload.
    return quote(value, safe=_SAFE, errors="replace")


def _encoded_prefix(value: str, length: int) -> str:
    """The encoding of the longest prefix of ``value`` that fits in ``length`` characters;
    cut between characters, so it decodes to a prefix of ``value``."""
    pieces: list[str] = []
    used = 0
    for char in value:
        piece = _encode(char)
        used += len(piece)
        if used > length:
            break
        pieces.append(piece)
    return "".join(pieces)
