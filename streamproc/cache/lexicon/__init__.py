"""The closed English vocabulary of the attribute guard.

Pure data plus the English morphology that expands it: ``nouns`` and ``places`` (subjects
and locations), ``verbs`` (actions), ``words`` (colours, time of day, weather, camera,
numbers, negation, fixed readings, stopwords) and ``morphology`` (plurals and verb forms).
``build`` turns them into the phrase table the guard scans prompts with.
"""

from __future__ import annotations

Attr = tuple[str, str]  # (family, canonical value)


def words(spec: str) -> frozenset[str]:
    """The space-separated words of ``spec``."""
    return frozenset(spec.split())


def alts(spec: str) -> list[str]:
    """The ``|``-separated alternatives of ``spec``, trimmed."""
    return [part.strip() for part in spec.split("|") if part.strip()]
