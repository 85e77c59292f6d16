"""Finding the final answer a solution states: the last complete ``\\boxed{...}``, else the
text after the last answer phrase (``####``, ``The answer is``, ``Answer:``, ...)."""

from __future__ import annotations

import re

from ttscale.grading.braces import matching_brace

__all__ = ["extract_answer", "extract_boxed"]

_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed[ \t]+([^\s{$\\][^\s$]*)")


def extract_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Nested braces are matched. A trailing box that is never closed (a truncated generation)
    is ignored in favour of the last complete one. ``\\boxed 5`` (no braces) is accepted too.
    Returns None when there is no box.
    """
    if not text:
        return None
    best_start = -1
    best: str | None = None
    for match in _BOXED_START.finditer(text):
        close = matching_brace(text, match.end() - 1)
        if close is not None and match.start() > best_start:
            best_start = match.start()
            best = text[match.end() : close].strip()
    for match in _BOXED_BARE.finditer(text):
        if match.start() > best_start:
            best_start = match.start()
            best = match.group(1).strip()
    return best


_ANSWER_ANCHOR = re.compile(
    r"####|(?i:final\s+answer\s*(?:is\b|:)|the\s+answer\s+is\b|\banswer\s*:)"
)
_MATH_SPAN = re.compile(r"^(\$\$|\$|\\\(|\\\[)(.+?)(\$\$|\$|\\\)|\\\])", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|(?i:\s*I hope it is correct)")
_TRAILING_JUNK = re.compile(r"(?:\s*(?:[.;,!:]|\*\*|\$))+\s*$")


def _clean_inline_answer(answer: str) -> str | None:
    """The answer stated at the start of ``answer`` (the text after an anchor): its first
    math span, else the rest of its first non-empty line up to the end of the sentence."""
    answer = answer.lstrip(":*= \t\r\n")
    span = _MATH_SPAN.match(answer)
    if span is not None:
        answer = span.group(2)
    else:
        answer = answer.split("\n", 1)[0]
        answer = _SENTENCE_END.split(answer, maxsplit=1)[0]
    answer = _TRAILING_JUNK.sub("", answer.strip().strip("*")).strip()
    return answer or None


def extract_answer(text: str) -> str | None:
    """The final answer a solution gives.

    The last ``\\boxed{...}``; otherwise what follows the last ``####``, ``The answer is``,
    ``The final answer is``, ``Final answer:`` or ``Answer:`` (its first math span, or the
    rest of the sentence, without a trailing full stop). None when no answer is stated.
    """
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    for anchor in reversed(list(_ANSWER_ANCHOR.finditer(text))):
        candidate = _clean_inline_answer(text[anchor.end() : anchor.end() + 2000])
        if candidate:
            return candidate
    return None
