"""Is an answer correct, and are two answers the same? Equal canonical forms
(:func:`~ttscale.grading.normalize.normalize_answer`) settle it at once; otherwise
math-verify compares them (:mod:`ttscale.grading.symbolic`). Never raises: any error means
"not equivalent"."""

from __future__ import annotations

import logging

from ttscale.grading.extract import extract_answer
from ttscale.grading.normalize import normalize_answer
from ttscale.grading.symbolic import math_verify_match

__all__ = ["answers_equivalent", "grade", "grade_solution"]

# Records carry the package's name, the one users (and tests) filter on.
logger = logging.getLogger(__package__)


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
        if na > nb:  # (a, b) and (b, a) run the same checks and share cache entries
            na, nb = nb, na
        return math_verify_match(na, nb) and math_verify_match(nb, na)
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
        return math_verify_match(gold, pred)
    except Exception:
        logger.debug("could not grade %r against %r", prediction, reference, exc_info=True)
        return False


def grade_solution(solution_text: str, reference: str) -> tuple[str | None, bool]:
    """Extract the final answer of a full solution and grade it: ``(answer, correct)``."""
    answer = extract_answer(solution_text)
    return answer, grade(answer, reference)
