"""A small structural lint of PromQL expressions (promtool is not available here).

It checks what breaks dashboards and alerts silently when the code changes: brackets
balance, every ``streamproc_*`` series named exists in :class:`streamproc.metrics.Metrics`,
and every label matched or grouped on exists on that metric. It is not a PromQL parser.
"""

from __future__ import annotations

import re

from streamproc.metrics import Metrics

_SERIES = re.compile(r"\b(streamproc_[a-z0-9_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"[^"]*"\s*$')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_PAIRS = {"(": ")", "{": "}", "[": "]"}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job", "le"})


def series_labels() -> dict[str, frozenset[str]]:
    """Each exported series name → the labels it carries."""
    out: dict[str, frozenset[str]] = {}
    for info in Metrics().catalogue():
        for name in info.series_names:
            extra = {"le"} if name.endswith("_bucket") else set()
            out[name] = frozenset(info.labels) | extra
    return out


def lint(expr: str) -> list[str]:
    """Problems found in ``expr`` (empty when none)."""
    problems: list[str] = []
    known = series_labels()
    stack: list[str] = []
    in_string = False
    for char in expr:
        if char == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif char in _PAIRS:
            stack.append(_PAIRS[char])
        elif char in _PAIRS.values() and (not stack or stack.pop() != char):
            problems.append(f"unbalanced {char!r}")
            break
    if stack or in_string:
        problems.append("unclosed bracket or string")
    used: set[str] = set()
    for name, braces in _SERIES.findall(expr):
        if name not in known:
            problems.append(f"unknown series {name}")
            continue
        used.add(name)
        if braces:
            for matcher in filter(None, braces[1:-1].split(",")):
                found = _MATCHER.match(matcher)
                if found is None:
                    problems.append(f"malformed matcher {matcher!r}")
                elif found.group(1) not in known[name] | TARGET_LABELS:
                    problems.append(f"{name} has no label {found.group(1)!r}")
    if used:
        allowed = set().union(*(known[n] for n in used)) | TARGET_LABELS
        for group in _GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in group.split(","))):
                if label not in allowed:
                    problems.append(f"grouping on unknown label {label!r}")
    return problems


def series_in(expr: str) -> set[str]:
    """The ``streamproc_*`` series ``expr`` names."""
    return {name for name, _ in _SERIES.findall(expr)}
