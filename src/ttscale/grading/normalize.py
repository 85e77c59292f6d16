"""A light canonical form of an extracted answer: equal forms are the same answer, and the
form is the key answers are cached and voted under. Each step below removes one kind of
notation that does not change the answer."""

from __future__ import annotations

import re

from ttscale.grading.braces import matching_brace

__all__ = ["normalize_answer"]

_TEXT_COMMANDS = (
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsf",
    "texttt",
    "textnormal",
    "mbox",
    "hbox",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "boxed",
    "fbox",
)
_UNIT_WORDS = (
    "square units|sq units|units|unit|square inches|square feet|square meters|square centimeters"
    "|square miles|square yards|sq ft|sq in|cubic inches|cubic feet|cubic centimeters"
    "|cubic meters|cubic units|degrees|degree|radians|cm|mm|km|m|meters|meter|metres|metre"
    "|centimeters|centimeter|kilometers|inches|inch|in|feet|foot|ft|yards|yard|yd|miles|mile"
    "|mph|dollars|dollar|cents|cent|hours|hour|hrs|hr|minutes|minute|min|mins|seconds|second"
    "|sec|days|day|weeks|week|months|month|years|year|grams|gram|g|kg|kilograms|pounds|pound"
    "|lbs|lb|ounces|ounce|oz|liters|liter|litres|litre|ml|gallons|gallon|cups|cup|people"
    "|students|ways|times|percent|points|point|calories|sq|st|nd|rd|th"
)
_NUMBERISH = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+|\\frac\{[^{}]*\}\{[^{}]*\}|\\frac\d\d?)"
_TEXT_UNIT = re.compile(
    r"^(?P<value>.*?[\d}])\s*\\(?:text|mbox|mathrm|textrm|hbox)\{\s*[a-zA-Z][a-zA-Z .]*\}"
    r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?$"
)
_PLAIN_UNIT = re.compile(
    rf"^(?P<value>{_NUMBERISH})\s+(?:{_UNIT_WORDS})\.?(?:\s*\^\s*\{{?[23]\}}?)?$", re.IGNORECASE
)
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree")
_SPACING = re.compile(r"(?<!\\)\\[,!;: ]|\\q?quad\b|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)\s*(?=[^a-zA-Z])")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_ASSIGNMENT = re.compile(r"^[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?=(?P<rhs>[^=<>]+)$")
_MEMBERSHIP = re.compile(r"^[a-zA-Z]\\in(?=[\[(\\{])")
_CHOICE = re.compile(r"^\(([A-Ea-e])\)$")
_CONTROL_WORD_SPACE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])")
_FRAC_SHORT = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])")
_FRAC_HALF_SHORT_1 = re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d|[a-zA-Z])")
_FRAC_HALF_SHORT_2 = re.compile(r"\\frac\s*(\d|[a-zA-Z])\s*(\{[^{}]*\})")
_SQRT_SHORT = re.compile(r"\\sqrt\s*([0-9a-zA-Z])")
_SLASH_FRACTION = re.compile(r"^(-?)(\d+)/(\d+)$")


def normalize_answer(answer: str) -> str:
    """A light canonical form of an extracted answer, used as a cache key and a vote key.

    Removes ``$``/``\\(..\\)`` delimiters, ``\\text{}``-style wrappers, trailing unit words,
    degree signs, ``\\%``, ``\\$``, LaTeX spacing (``\\!``, ``\\,``, ...), ``\\left``/``\\right``,
    a trailing full stop, a leading single-variable assignment (``x=5`` -> ``5``) and
    whitespace; maps ``\\dfrac``/``\\tfrac`` to ``\\frac`` and ``\\frac12``/``1/2`` to
    ``\\frac{1}{2}``; writes plain numbers canonically (``1,450,000`` -> ``1450000``,
    ``025`` -> ``25``, ``.5`` -> ``0.5``, ``2.50`` -> ``2.5``) and ``(C)`` as ``C``.
    The result is still LaTeX with the same meaning (up to units and percent signs).
    """
    if not answer:
        return ""
    s = _drop_typesetting(str(answer))
    s = _drop_units_and_wrappers(s)
    s = _drop_whitespace(s)
    s = _brace_short_arguments(s)
    s = re.sub(r"[.,;]+$", "", s)
    s = _drop_variable(s)
    return _canonical_value(s)


def _drop_typesetting(s: str) -> str:
    """Math delimiters, spacing, sizing, degree and percent signs, a trailing full stop;
    Unicode minus and infinity as LaTeX, ``\\dfrac``/``\\tfrac`` as ``\\frac``."""
    s = _strip_math_delimiters(s)
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\u221e", "\\infty")
    s = s.replace("\n", " ").replace("\t", " ")
    s = s.replace("\\displaystyle", "").replace("\\$", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("{,}", ",")
    s = _SPACING.sub(" ", s)
    s = s.replace("\\left.", "").replace("\\right.", "")
    s = _LEFT_RIGHT.sub("", s)
    s = _DEGREES.sub("", s)
    s = s.strip()
    return re.sub(r"(?:\s*[.。])+$", "", s).strip()


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    for opener, closer in (("\\[", "\\]"), ("\\(", "\\)")):
        if text.startswith(opener) and text.endswith(closer):
            text = text[len(opener) : -len(closer)].strip()
    return text.replace("\\$", "").replace("$", "")


def _drop_units_and_wrappers(s: str) -> str:
    """Units after a value (``10\\text{ cm}``, ``864 \\mbox{ inches}^2``, ``5 inches``) and
    ``\\text{}``-style wrappers around the rest."""
    match = _TEXT_UNIT.match(s)
    if match is not None and "\\text" not in match.group("value"):
        s = match.group("value").strip()
    s = _unwrap_commands(s, _TEXT_COMMANDS).strip()
    match = _PLAIN_UNIT.match(s)
    if match is not None:
        s = match.group("value").strip()
    return s


def _unwrap_commands(text: str, names: tuple[str, ...]) -> str:
    """Replace ``\\name{content}`` by ``content`` for each command name (nesting handled)."""
    pattern = re.compile(r"\\(?:" + "|".join(names) + r")\s*\{")
    while True:
        match = pattern.search(text)
        if match is None:
            return text
        close = matching_brace(text, match.end() - 1)
        if close is None:  # unbalanced: drop the command word only
            return text[: match.start()] + text[match.end() - 1 :]
        text = text[: match.start()] + text[match.end() : close] + text[close + 1 :]


def _drop_whitespace(s: str) -> str:
    """All whitespace, but the one that ends a control word before a letter (``\\pi r``)."""
    s = _CONTROL_WORD_SPACE.sub("\\1\x00", s)
    return re.sub(r"\s+", "", s).replace("\x00", " ")


def _brace_short_arguments(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``."""
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT_1.sub(r"\\frac\1{\2}", s)
    s = _FRAC_HALF_SHORT_2.sub(r"\\frac{\1}\2", s)
    return _SQRT_SHORT.sub(r"\\sqrt{\1}", s)


def _drop_variable(s: str) -> str:
    """A leading single-variable assignment (``x=5`` -> ``5``, but not ``x=1,2``) or
    membership (``x\\in[0,1]`` -> ``[0,1]``)."""
    if s.count("=") == 1:
        match = _ASSIGNMENT.match(s)
        if match is not None and "," not in match.group("rhs"):
            s = match.group("rhs")
    return _MEMBERSHIP.sub("", s)


def _canonical_value(s: str) -> str:
    """``(C)`` -> ``C``, plain numbers written canonically, ``1/2`` -> ``\\frac{1}{2}``."""
    match = _CHOICE.match(s)
    if match is not None:
        s = match.group(1).upper()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if _PLAIN_NUMBER.match(s):
        s = _canonical_number(s)
    match = _SLASH_FRACTION.match(s)
    if match is not None:
        s = f"{match.group(1)}\\frac{{{match.group(2)}}}{{{match.group(3)}}}"
    return s


def _canonical_number(text: str) -> str:
    """``-007.50`` -> ``-7.5``, ``.5`` -> ``0.5``, ``3.`` -> ``3``, ``-0`` -> ``0`` (exact)."""
    sign = "-" if text.startswith("-") else ""
    integer, _, fraction = text.lstrip("+-").partition(".")
    integer = integer.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    if integer == "0" and not fraction:
        return "0"
    return f"{sign}{integer}.{fraction}" if fraction else f"{sign}{integer}"
