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

Modules: :mod:`extract` (the final answer of a solution), :mod:`normalize` (canonical
strings), :mod:`symbolic` (math-verify, cached), :mod:`alarm` (its time bound),
:mod:`equivalence` (grading and comparing answers), :mod:`grouping` (classes of equal
answers) and :mod:`braces` (LaTeX brace matching).
"""

from __future__ import annotations

from ttscale.grading.alarm import MATH_VERIFY_TIMEOUT_S
from ttscale.grading.equivalence import answers_equivalent, grade, grade_solution
from ttscale.grading.extract import extract_answer, extract_boxed
from ttscale.grading.grouping import Equivalence, group_answers
from ttscale.grading.normalize import normalize_answer
from ttscale.grading.symbolic import MAX_VERIFY_CHARS

__all__ = [
    "MATH_VERIFY_TIMEOUT_S",
    "MAX_VERIFY_CHARS",
    "Equivalence",
    "answers_equivalent",
    "extract_answer",
    "extract_boxed",
    "grade",
    "grade_solution",
    "group_answers",
    "normalize_answer",
]
