"""The one rule for every name a person gives: datasets, feature sets and studies.

A name is trimmed of plain spaces at either end, then must be 1 to ``MAX_NAME_CHARS`` printable characters: no
control, format (right-to-left override, zero-width) or separator character other than the plain space, no slash
or backslash, not only dots and not only digits. Why each: ``demo `` or a direction mark looks like another name
on screen (trimmed, ``demo `` *is* ``demo``, so it collides instead of hiding); a line break splits printed tables; slashes and dots read as paths (upload folders,
exports); an all-digit name reads as another row's id on the command line (``--dataset 1``). Refused in one
line that quotes the name escaped and clipped, so the message itself stays inert.

Storage applies it where a new row is inserted (``store_dataset``, ``create_feature_set``); the validators
(``jobs.submit``, ``jobs.datasets``) apply it before anything is read or queued. Names stored before the rule
keep working: they are looked up, never re-checked.
"""
from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 100
KINDS = ("dataset", "feature set", "study")
RULE = (f"names are 1 to {MAX_NAME_CHARS} printable characters, not only digits or dots, with no slash, "
        "line break, control or direction mark")


def name_problem(name: object) -> str | None:
    """Why the (already trimmed) ``name`` breaks the rule, in a few words, or None when it is a good name."""
    if not isinstance(name, str) or not name:
        return "it is empty (or only spaces)"
    if len(name) > MAX_NAME_CHARS:
        return f"it is {len(name):,} characters long"
    for ch in name:
        if ch == " ":
            continue
        category = unicodedata.category(ch)
        if category[0] in "CZ":  # controls, format marks (bidi, zero-width), unassigned; separators but ' '
            return f"it contains the invisible or control character U+{ord(ch):04X}"
        if ch in "/\\":
            return "it contains a slash"
    if name.isdigit():
        return "it is only digits (it would read as an id)"
    if set(name) == {"."}:
        return "it is only dots"
    return None


def check_name(kind: str, name: object) -> str:
    """``name`` trimmed of plain spaces when it then follows the rule, else ValueError in one line naming the
    kind and the reason. Callers store the returned name, never the one given."""
    trimmed = name.strip(" ") if isinstance(name, str) else name
    problem = name_problem(trimmed)
    if problem is None:
        return trimmed  # type: ignore[return-value]
    return _refuse(kind, name, problem)


def _refuse(kind: str, name: object, problem: str) -> str:
    shown = repr(name[:40] + "…" if isinstance(name, str) and len(name) > 40 else name)
    raise ValueError(f"{kind} name {shown} refused: {problem}; {RULE}")
