"""Final-answer extraction and answer equivalence for math benchmarks.

Answers are compared in two stages:

1. a cheap string canonicalisation (:func:`normalize_answer`): equal canonical strings are
   the same answer;
2. otherwise both canonical strings are parsed and compared with ``math-verify`` (sympy based:
   fractions vs decimals, intervals, sets, tuples, matrices, equations, ...).

Every public function is total: a parse error, a sympy error or a timeout means "not
equivalent" and never reaches the caller.

Time per call is bounded. ``math-verify`` interrupts slow parses and comparisons with
``SIGALRM``, which Python only allows in the main thread; there a timeout of
:data:`MATH_VERIFY_TIMEOUT_S` seconds is used (an alarm already set by the caller, e.g. by
``pytest-timeout``, is preserved). In other threads no alarm can be set, so answers that
could keep sympy busy for long skip ``math-verify`` and are compared by their canonical
strings only: nested exponents, and powers, factorials, binomials, sums or products next to a
number of four or more digits (``10^{10^{10}}``, ``100000!``, ``(x+1)^{1000}``). Answers
longer than :data:`MAX_VERIFY_CHARS` characters are compared as strings everywhere.
"""

from __future__ import annotations

import gc
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

__all__ = [
    "MATH_VERIFY_TIMEOUT_S",
    "MAX_VERIFY_CHARS",
    "answers_equivalent",
    "extract_answer",
    "extract_boxed",
    "grade",
    "grade_solution",
    "normalize_answer",
]

logger = logging.getLogger(__name__)

MATH_VERIFY_TIMEOUT_S = 5
"""Seconds allowed for one ``math-verify`` parse or comparison (main thread only)."""

MAX_VERIFY_CHARS = 1000
"""Canonical answers longer than this are compared as strings only."""

_CACHE_SIZE = 65536


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed[ \t]+([^\s{$\\][^\s$]*)")


def _matching_brace(text: str, open_index: int) -> int | None:
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
        close = _matching_brace(text, match.end() - 1)
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


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

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


def _unwrap_commands(text: str, names: tuple[str, ...]) -> str:
    """Replace ``\\name{content}`` by ``content`` for each command name (nesting handled)."""
    pattern = re.compile(r"\\(?:" + "|".join(names) + r")\s*\{")
    while True:
        match = pattern.search(text)
        if match is None:
            return text
        close = _matching_brace(text, match.end() - 1)
        if close is None:  # unbalanced: drop the command word only
            return text[: match.start()] + text[match.end() - 1 :]
        text = text[: match.start()] + text[match.end() : close] + text[close + 1 :]


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    for opener, closer in (("\\[", "\\]"), ("\\(", "\\)")):
        if text.startswith(opener) and text.endswith(closer):
            text = text[len(opener) : -len(closer)].strip()
    return text.replace("\\$", "").replace("$", "")


def _canonical_number(text: str) -> str:
    """``-007.50`` -> ``-7.5``, ``.5`` -> ``0.5``, ``3.`` -> ``3``, ``-0`` -> ``0`` (exact)."""
    sign = "-" if text.startswith("-") else ""
    integer, _, fraction = text.lstrip("+-").partition(".")
    integer = integer.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    if integer == "0" and not fraction:
        return "0"
    return f"{sign}{integer}.{fraction}" if fraction else f"{sign}{integer}"


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
    s = _strip_math_delimiters(str(answer))
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
    s = re.sub(r"(?:\s*[.。])+$", "", s).strip()

    # Units written as text after a value: 10\text{ cm}, 864 \mbox{ inches}^2.
    match = _TEXT_UNIT.match(s)
    if match is not None and "\\text" not in match.group("value"):
        s = match.group("value").strip()
    s = _unwrap_commands(s, _TEXT_COMMANDS).strip()
    match = _PLAIN_UNIT.match(s)
    if match is not None:
        s = match.group("value").strip()

    # Whitespace, keeping the one that ends a control word before a letter (\pi r).
    s = _CONTROL_WORD_SPACE.sub("\\1\x00", s)
    s = re.sub(r"\s+", "", s).replace("\x00", " ")

    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT_1.sub(r"\\frac\1{\2}", s)
    s = _FRAC_HALF_SHORT_2.sub(r"\\frac{\1}\2", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"[.,;]+$", "", s)

    if s.count("=") == 1:
        match = _ASSIGNMENT.match(s)
        if match is not None and "," not in match.group("rhs"):
            s = match.group("rhs")
    s = _MEMBERSHIP.sub("", s)

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


# --------------------------------------------------------------------------------------------
# math-verify
# --------------------------------------------------------------------------------------------


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns once when called without a timeout; off the main thread that is
    deliberate here (costly answers are not given to math-verify there instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())

_math_verify = None


def _load_math_verify():
    global _math_verify
    if _math_verify is None:
        import math_verify
        from math_verify.errors import TimeoutException

        _math_verify = (
            math_verify.parse,
            math_verify.verify,
            (math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()),
            TimeoutException,
        )
    return _math_verify


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_HEAVY_OPERATOR = re.compile(r"\^|!|\\binom|\\choose|\\sum|\\prod")
_BIG_INTEGER = re.compile(r"\d{4,}")
_NESTED_EXPONENT = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{[^{}]*\{[^{}]*\^|\^[^{\s]\^")


def _too_costly_without_timeout(canonical: str) -> bool:
    """Could math-verify run for long on this answer? Only asked when no timeout is possible."""
    if len(canonical) > MAX_VERIFY_CHARS:
        return True
    if _NESTED_EXPONENT.search(canonical):
        return True
    return bool(_HEAVY_OPERATOR.search(canonical) and _BIG_INTEGER.search(canonical))


@contextmanager
def _alarm_budget() -> Iterator[int | None]:
    """The timeout to give math-verify: None off the main thread. In the main thread an
    interval timer already running (pytest-timeout, a caller's own alarm) is suspended while
    math-verify uses SIGALRM and re-armed afterwards with the time it had left."""
    if not _in_main_thread():
        yield None
        return
    try:
        remaining, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    except (AttributeError, ValueError, OSError):  # no interval timers on this platform
        yield MATH_VERIFY_TIMEOUT_S
        return
    started = time.monotonic()
    budget = MATH_VERIFY_TIMEOUT_S
    if remaining > 0:
        budget = max(1, min(budget, math.ceil(remaining)))
    # The alarm raises in whatever frame runs when it fires. If that is the finaliser of
    # some unrelated garbage run by the cyclic collector, Python swallows the exception and
    # math-verify runs on unbounded: keep the collector out of the timed window.
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield budget
    finally:
        if collecting:
            gc.enable()
        if remaining > 0:
            left = max(remaining - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


_WORD = re.compile(r"^[a-zA-Z]{3,}$")


def _mv_input(canonical: str) -> str:
    # A bare word (a name, "even", "ellipse") is text, not a product of variables.
    if _WORD.match(canonical):
        return "$\\text{" + canonical + "}$"
    return "$" + canonical + "$"


@lru_cache(maxsize=_CACHE_SIZE)
def _parse(canonical: str) -> tuple:
    """math-verify parses of a canonical answer (sympy objects and/or a string fallback)."""
    if not canonical or len(canonical) > MAX_VERIFY_CHARS:
        return ()
    if not _in_main_thread() and _too_costly_without_timeout(canonical):
        return ()
    parse, _, configs, timeout_exc = _load_math_verify()
    try:
        with _alarm_budget() as budget:
            return tuple(parse(_mv_input(canonical), list(configs), parsing_timeout=budget))
    except (Exception, timeout_exc):  # a failure means "cannot compare", never an error
        logger.debug("math-verify could not parse %r", canonical, exc_info=True)
        return ()


@lru_cache(maxsize=_CACHE_SIZE)
def _verify(gold: str, pred: str) -> bool:
    """Does ``pred`` match ``gold`` (both canonical strings) according to math-verify."""
    if gold == pred:
        return bool(gold)
    if not gold or not pred or max(len(gold), len(pred)) > MAX_VERIFY_CHARS:
        return False
    if not _in_main_thread() and (
        _too_costly_without_timeout(gold) or _too_costly_without_timeout(pred)
    ):
        return False
    gold_parsed = _parse(gold)
    pred_parsed = _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    _, verify, _, timeout_exc = _load_math_verify()
    try:
        with _alarm_budget() as budget:
            return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=budget))
    except (Exception, timeout_exc):
        logger.debug("math-verify could not compare %r with %r", gold, pred, exc_info=True)
        return False


# --------------------------------------------------------------------------------------------
# Public comparison API
# --------------------------------------------------------------------------------------------


def answers_equivalent(a: str, b: str) -> bool:
    """Are two extracted answers the same mathematical answer? Symmetric.

    True when their canonical forms are equal, or when math-verify accepts each one as a
    match for the other (both directions are required, so e.g. an inequality and an interval
    are only merged when both readings agree).
    """
    try:
        na, nb = normalize_answer(a), normalize_answer(b)
        if na == nb:
            return bool(na)
        if na > nb:
            na, nb = nb, na
        return _verify(na, nb) and _verify(nb, na)
    except Exception:
        logger.debug("could not compare answers %r and %r", a, b, exc_info=True)
        return False


def grade(prediction: str | None, reference: str) -> bool:
    """Is the extracted ``prediction`` (None when the solution gave no answer) correct for a
    dataset's ``reference`` answer?"""
    if prediction is None:
        return False
    try:
        gold, pred = normalize_answer(str(reference)), normalize_answer(str(prediction))
        if gold == pred:
            return bool(gold)
        return _verify(gold, pred)
    except Exception:
        logger.debug("could not grade %r against %r", prediction, reference, exc_info=True)
        return False


def grade_solution(solution_text: str, reference: str) -> tuple[str | None, bool]:
    """Extract the final answer of a full solution and grade it: ``(answer, correct)``."""
    answer = extract_answer(solution_text)
    return answer, grade(answer, reference)


Equivalence = Callable[[str, str], bool]


def group_answers(
    answers: Sequence[str | None], equivalent: Equivalence | None = None
) -> list[list[int]]:
    """Indices of equivalent answers grouped together, in order of first appearance.

    Each answer is compared with one representative per group, so k answers in g groups cost
    at most k·g equivalence checks (cached by the grader)."""
    equivalent = equivalent or answers_equivalent
    groups: list[list[int]] = []
    representatives: list[str] = []
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        for group, representative in zip(groups, representatives, strict=True):
            if answer == representative or equivalent(answer, representative):
                group.append(index)
                break
        else:
            groups.append([index])
            representatives.append(answer)
    return groups
