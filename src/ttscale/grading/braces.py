"""Brace matching in LaTeX, shared by answer extraction and normalisation."""

from __future__ import annotations

__all__ = ["matching_brace"]


def matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index``; escaped braces (``\\{``) and
    other control symbols are skipped. None when the group is never closed."""
    depth = 0
    i = open_index
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None
