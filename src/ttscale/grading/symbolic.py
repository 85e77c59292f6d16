"""Comparing two canonical answers with ``math-verify`` (sympy based: fractions vs decimals,
intervals, sets, tuples, matrices, equations, ...). Parses and comparisons are cached; any
failure or timeout means "no match".

Where no timeout can be set (off the main thread, see :mod:`ttscale.grading.alarm`), answers
that could keep sympy busy for long are not given to math-verify: nested exponents, and
powers, factorials, binomials, sums or products next to a number of four or more digits.
Answers longer than :data:`MAX_VERIFY_CHARS` characters never are."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from ttscale.grading.alarm import alarm_budget, in_main_thread

__all__ = ["MAX_VERIFY_CHARS", "math_verify_match"]

# Records carry the package's name, the one users (and tests) filter on.
logger = logging.getLogger(__package__)

MAX_VERIFY_CHARS = 1000
"""Canonical answers longer than this are compared as strings only."""

_CACHE_SIZE = 65536


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns once when called without a timeout; off the main thread that is
    deliberate here (costly answers are not given to math-verify there instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())

def math_verify_match(gold: str, pred: str) -> bool:
    """Does ``pred`` match ``gold`` (both canonical strings) according to math-verify?
    Not symmetric; cached; never raises."""
    return _verify(gold, pred)


_math_verify = None


def _load_math_verify():
    """``(parse, verify, extraction configs, timeout exception)``, imported on first use."""
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
    if not in_main_thread() and _too_costly_without_timeout(canonical):
        return ()
    parse, _, configs, timeout_exc = _load_math_verify()
    try:
        with alarm_budget() as budget:
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
    if not in_main_thread() and (
        _too_costly_without_timeout(gold) or _too_costly_without_timeout(pred)
    ):
        return False
    gold_parsed = _parse(gold)
    pred_parsed = _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    _, verify, _, timeout_exc = _load_math_verify()
    try:
        with alarm_budget() as budget:
            return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=budget))
    except (Exception, timeout_exc):
        logger.debug("math-verify could not compare %r with %r", gold, pred, exc_info=True)
        return False
