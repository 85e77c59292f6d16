"""Exact step correctness for problems whose intermediate quantities are known.

The difficulty ladder (:mod:`ttscale.datasets.ladder`) records every true intermediate value of a
problem (:attr:`ttscale.datasets.Problem.quantities`, the last one the answer) and its numbers
are distinct from each other and from the numbers given in the text. So whether a step a
policy writes is right can be decided exactly, with no model and no rollouts.

Why it matters: a sample can reach the reference answer by luck through wrong steps (``370 -
370 = 1`` on the way to a right final number), and final-answer grading counts it as solved.
Pass@N, "one of the N samples has the right answer", therefore overstates what an honest
verifier could recover: a verifier that checks the reasoning must reject such a sample.
*Genuine* pass@N counts only the samples whose answer is right **and** whose every step holds
(:func:`genuine`); the same labels are exact training targets for a PRM (``ttscale prm label
--method exact``).

The rule, step by step (:func:`step_labels`; a leading ``Step k:`` is not one of the step's
numbers):

* **final-answer step** (a ``\\boxed{}`` or "The answer is"): right when its answer equals the
  problem's answer (numerically, or by :func:`ttscale.grading.grade`); if it also computes
  (below), the computation must be right too.
* **computing step** (it writes an equation with an operator that
  :func:`ttscale.rewards.arithmetic.check_equations` can check, e.g. ``28 + 22 = 50``): right
  when every equation it writes holds **and** the number it computes, the result of its last
  equation, is one of the problem's true quantities. A result equal to a number *given* in
  the text is not progress and is wrong: after ``Emma has 28 + 22 = 50`` the invented step
  ``She has 50 - 22 = 28 more`` only undoes the work (28 is a given, not a quantity).
  Recomputing a quantity already reached is right (it is true, if idle), and so, a limit
  of the rule, is reaching an earlier quantity by another route (``96 / 6 = 16`` where 16
  was a count two steps before): values are checked, not their order in the chain. Only the
  last equation's result is required to be a quantity; earlier ones in the same step need
  only hold.
* **an operation the checker cannot read** (``28 + 22 pencils``, ``x = 28 + 22``): unlabelled
  (None), since nothing exact can be said.
* **restatement** (numbers, no operation, e.g. ``Emma has 28 pencils.``): right when each of
  its numbers is one of the quantities or one of the givens.
* **no number** (prose such as ``Let's think.``): unlabelled (None).

Numbers compare numerically (``50 == 50.0 == "50"``, ``1,200 == 1200``). The givens are the
numbers in the problem's text, with "twice" (the ladder's way of writing a factor of 2) read
as 2 — the same set as the ladder rows' ``givens``.

A solution is :func:`genuine` when its final answer is correct and no step is labelled False
(unlabelled steps do not count against it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fractions import Fraction

from ttscale.datasets import Problem
from ttscale.grading import extract_answer, grade
from ttscale.rewards.arithmetic import check_equations

__all__ = ["genuine", "given_numbers", "numbers_in", "step_label", "step_labels"]

_STEP_PREFIX = re.compile(r"^\W*step\s*\d+\s*[:.)\-]?\s*", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\w)")
_NUMBER_START = re.compile(
    r"\s*(?:\\boxed\s*\{|\\\$|\$|\\\(|\{|\s)*(-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
    r"|\.\d+))")
_OPERATION = re.compile(
    r"\d\s*\)?\s*(?:[-+*/×÷·−]|\\times|\\cdot|\\div|\\ast|[xX](?=\s*\(?\d))\s*\(?\s*\d")
_WORD_NUMBERS = {"twice": Fraction(2)}


def _value(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def numbers_in(text: str) -> list[Fraction]:
    """The numbers written in ``text``, in order (thousands separators allowed)."""
    values = (_value(m.group(0)) for m in _NUMBER.finditer(text))
    return [v for v in values if v is not None]


def given_numbers(problem_text: str) -> frozenset[Fraction]:
    """The numbers a problem gives: those written in it, and "twice" as 2."""
    found = set(numbers_in(problem_text))
    words = set(re.findall(r"[a-z]+", problem_text.lower()))
    found.update(value for word, value in _WORD_NUMBERS.items() if word in words)
    return frozenset(found)


def _quantities(problem: Problem) -> frozenset[Fraction]:
    values = {_value(q) for q in problem.quantities}
    values.discard(None)
    return frozenset(values)


def _body(step: str) -> str:
    """The step without its ``Step k:`` label."""
    return _STEP_PREFIX.sub("", step.strip(), count=1)


def _last_result(text: str) -> Fraction | None:
    """The number written right after the last ``=`` that is followed by one."""
    for match in reversed(list(re.finditer(r"(?<![=<>!])=(?!=)", text))):
        number = _NUMBER_START.match(text, match.end())
        if number is not None:
            return _value(number.group(1))
    return None


def _answer_matches(answer: str, reference: str) -> bool:
    if grade(answer, reference):
        return True
    # "50 pencils": a number followed by words only
    match = re.fullmatch(r"\s*\$?\s*(-?[\d,]*\.?\d+)\s*[A-Za-z .]*", answer)
    ours, theirs = (_value(match.group(1)) if match else None), _value(reference.strip())
    return ours is not None and ours == theirs


def _computation(text: str, quantities: frozenset[Fraction]) -> bool | None:
    """True/False for a step that computes (a checkable equation), None for one that does
    not."""
    checked, correct = check_equations(text)
    if not checked:
        return None
    return correct == checked and _last_result(text) in quantities


def step_label(problem: Problem, step: str, *, givens: Iterable | None = None) -> bool | None:
    """One step's exact label (see the module's rule); ``givens`` defaults to the numbers in
    the problem's text."""
    if not problem.quantities:
        raise ValueError(f"problem {problem.id} has no recorded quantities: its steps cannot be "
                         "labelled exactly")
    quantities = _quantities(problem)
    text = _body(step)
    computed = _computation(text, quantities)
    answer = extract_answer(text)
    if answer is not None:
        return _answer_matches(answer, problem.answer) and computed is not False
    if computed is not None:
        return computed
    if _OPERATION.search(text):
        return None  # an operation written in a way the checker cannot read
    numbers = numbers_in(text)
    if not numbers:
        return None
    known = quantities | (given_numbers(problem.problem) if givens is None
                          else {Fraction(str(g)) for g in givens})
    return all(n in known for n in numbers)


def step_labels(problem: Problem, steps: Sequence[str]) -> list[bool | None]:
    """Each step's exact label: True (right), False (wrong) or None (nothing to check)."""
    givens = given_numbers(problem.problem)
    return [step_label(problem, step, givens=givens) for step in steps]


def genuine(problem: Problem, steps: Sequence[str], correct: bool) -> bool:
    """A solution whose final answer is ``correct`` and where no step is wrong."""
    return bool(correct) and not any(label is False for label in step_labels(problem, steps))
