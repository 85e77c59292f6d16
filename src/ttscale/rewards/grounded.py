"""A grounded step verifier: no model, and nothing but the problem text and the steps.

The arithmetic checker (:mod:`ttscale.rewards.arithmetic`) asks whether an equation holds.
Small policies make errors it cannot see, because their equations do hold:

* an operand from nowhere: ``Emma has 28 + 12 = 40`` when the problem says 22;
* a step that undoes or repeats work: ``She has 50 - 22 = 28 more pencils`` after
  ``28 + 22 = 50`` (true, and no step towards the answer);
* a final answer that is not what the steps computed: ``\\boxed{10}`` after ``... = 50``;
* a new number stated without computing it: ``She has 35 pencils left.``

So this verifier keeps the set K of known numbers and walks the steps in order. K starts as
the numbers in the problem — digits (``1,200``, ``$5``, ``2.5``), percents (``25%`` as 25,
and as 0.25, 0.75, 1.25, 75, 125 for operands), fractions (``3/4`` as 3, 4, 0.75 and 0.25),
number words (``one`` .. ``ninety``, ``twenty-five``, ``two hundred``, ``a hundred``) and
multiplier words (``twice``/``double``/``both``/``pair`` 2, ``triple``/``thrice`` 3,
``half`` 2 and 0.5, ``quarter`` 4 and 0.25, ``third`` 3 and 1/3, ``dozen`` 12, ...) — plus 0,
1 and the everyday constants of the units the problem names (:data:`UNIT_CONSTANTS`: 7 only
in a problem about weeks, 60 only with hours, minutes or seconds, 100 only with percents,
cents or metres, ...). A bare 2 is known only when the problem writes it (``2``, ``two``,
``twice``, ``double``, ``half``, ``pair``, ``couple``, ``both``) or names a weekend:
doubling and halving are what a small policy invents.

Each step is scored (:func:`grounded_scores`):

* a step with equations (found by :func:`ttscale.rewards.arithmetic.find_equations`, after
  ``25% of 80``, ``half of 80`` and ``80 * 25%`` are written as arithmetic) scores the worst
  of its equations: :data:`SCORE_WRONG` when one does not hold, :data:`SCORE_UNGROUNDED` when
  one uses an operand that is neither in K nor computed earlier in the same step,
  :data:`SCORE_NO_PROGRESS` when one takes a computed value back to the numbers it came from
  (``50 - 22 = 28`` after ``28 + 22 = 50``), cancels a number against itself (``34 - 34``)
  or repeats an earlier step's computation, and
  :data:`SCORE_SOUND` otherwise.
* a step that gives the final answer (``\\boxed{..}``, ``The answer is ..``) scores
  :data:`SCORE_ANSWER_FAITHFUL` when the answer is the result of the last equation written
  so far (its written result or its exact value; or, when nothing was computed, a number the
  problem or a step stated) and :data:`SCORE_ANSWER_UNFAITHFUL` otherwise; a step that
  computes and answers scores the worse of the two.
* a step with numbers and no equation: :data:`SCORE_NEUTRAL` when all its numbers are in K
  or it writes an operation the equation reader cannot check, :data:`SCORE_UNSUPPORTED` when
  it asserts a new number. Prose without numbers: neutral.

After a step is scored, every number it wrote joins K, whatever its score: a step is judged
given the steps before it as written, so an error scores low at the step that makes it and
not again at each step that builds on it (one doubtful step does not sink the rest), and
the final answer step only checks that the answer is what the steps computed. To rank whole
solutions by their worst step, aggregate with ``min`` or ``prod``; with ``last``, only the
answer step counts.

"No progress" is read from where numbers came from, not from K alone: two quantities often
have the same value by chance (``3 * 10 = 30`` and later ``2 * 15 = 30``), and the second is
progress all the same. Only digits count as numbers in steps (``twenty`` in a step is prose).

Model output is never executed: equations are evaluated by the AST whitelist of
:mod:`ttscale.rewards.arithmetic`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from ttscale.grading import extract_answer, normalize_answer
from ttscale.rewards.arithmetic import Equation, _agree, find_equations
from ttscale.rewards.base import ScoreBatch
from ttscale.steps import Step

__all__ = ["SCORE_ANSWER_FAITHFUL", "SCORE_ANSWER_UNFAITHFUL", "SCORE_NEUTRAL",
           "SCORE_NO_PROGRESS", "SCORE_SOUND", "SCORE_UNGROUNDED", "SCORE_UNSUPPORTED",
           "SCORE_WRONG", "UNIT_CONSTANTS", "GroundedScorer", "grounded_scores",
           "problem_numbers"]

# every equation holds, uses known numbers and finds something new
SCORE_SOUND = 1.0
# an equation that does not hold: the step is wrong whatever else it does
SCORE_WRONG = 0.0
# an operand from nowhere (28 + 12 when the problem says 22): true arithmetic on a number
# the solution made up, nearly always a wrong step; just above a wrong equation
SCORE_UNGROUNDED = 0.1
# true arithmetic on known numbers that gives back where it came from: no error yet, but a
# detour that small policies take before a wrong answer
SCORE_NO_PROGRESS = 0.2
# a new number stated without computing it: as unsupported as an ungrounded operand
SCORE_UNSUPPORTED = 0.1
# nothing to check (prose, known numbers restated): no evidence either way
SCORE_NEUTRAL = 0.5
# the final answer is the value the steps computed
SCORE_ANSWER_FAITHFUL = 1.0
# the final answer is not the value the steps computed: the solution contradicts itself
SCORE_ANSWER_UNFAITHFUL = 0.0

# Everyday constants: known as operands when the problem names their unit (every regex of an
# entry must match the problem, lower-cased). They never count as stated facts.
UNIT_CONSTANTS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (7, (r"\bweek",)),  # days in a week
    (5, (r"\bweekday|\bwork ?week",)),  # days in a working week
    (2, (r"\bweekend",)),  # days in a weekend
    (12, (r"\bmonth|\byear|\bannual|\bdozen|\bfeet\b|\bfoot\b|\binch",)),  # months, dozen, inches
    (24, (r"\bday\b|\bdays\b|\bdaily\b|\bhour",)),  # hours in a day
    (60, (r"\bhour|\bminute|\bsecond|\bmph\b",)),  # minutes in an hour, seconds in a minute
    (100, (r"%|\bpercent|\bcent|\bcm\b|\bmet(?:er|re)|\bcentur",)),  # percent, cents, cm
    (1000, (r"\bkilo|\bkm\b|\bkg\b|\bmilli|\bml\b|\bmm\b|\bgram|\blit(?:er|re)",)),  # metric
    (52, (r"\bweek", r"\byear|\bannual")),  # weeks in a year
    (365, (r"\bday\b|\bdays\b|\bdaily\b", r"\byear|\bannual")),  # days in a year
    (30, (r"\bday\b|\bdays\b|\bdaily\b", r"\bmonth")),  # days in a month
    (3, (r"\byard",)),  # feet in a yard
    (16, (r"\bounce|\boz\b|\bpound|\blbs?\b",)),  # ounces in a pound
    (4, (r"\bgallon|\bquart",)),  # quarts in a gallon
    (10, (r"\bdime|\bdecade",)),
    (5, (r"\bnickel",)),
    (25, (r"\bquarters\b",)),  # cents in a quarter (the coin)
)
# known in every problem, as operands: nothing, one of something, 1 - 3/4
ALWAYS_KNOWN: frozenset[Fraction] = frozenset({Fraction(0), Fraction(1)})

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
# words that scale a quantity: known as operands, not as stated quantities
_MULTIPLIER_WORDS: dict[str, tuple[Fraction, ...]] = {
    word: tuple(Fraction(v) for v in values) for words, values in (
        (("twice", "double", "doubles", "doubled", "doubling", "both", "pair", "pairs",
          "couple"), (2,)),
        (("triple", "triples", "tripled", "thrice"), (3,)),
        (("quadruple", "quadruples", "quadrupled"), (4,)),
        (("half", "halves", "halved", "halve", "halfway"), (2, Fraction(1, 2))),
        (("third", "thirds"), (3, Fraction(1, 3), Fraction(2, 3))),
        (("quarter", "quarters", "fourth", "fourths"), (4, Fraction(1, 4), Fraction(3, 4))),
        (("fifth", "fifths"), (5, Fraction(1, 5))),
        (("sixth", "sixths"), (6, Fraction(1, 6))),
        (("seventh", "sevenths"), (7, Fraction(1, 7))),
        (("eighth", "eighths"), (8, Fraction(1, 8))),
        (("ninth", "ninths"), (9, Fraction(1, 9))),
        (("tenth", "tenths"), (10, Fraction(1, 10))),
        (("dozen", "dozens"), (12,)),
    ) for word in words
}

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_PROBLEM_NUMBER = re.compile(
    rf"(?<![\d.,])({_DIGITS})(?:\s*(%|\\%|percent\b)|\s+(hundred|thousand|million|billion)\b)?",
    re.IGNORECASE)
_STEP_NUMBER = re.compile(rf"(?<![\d.,])({_DIGITS})(\s*(?:%|\\%|percent\b))?", re.IGNORECASE)
_FRACTION = re.compile(r"\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}|(?<![\d.])(\d+)\s*/\s*(\d+)")
_WORDS = re.compile(r"[a-z]+")
# a computation the equation reader may not parse: a step with one is no bare assertion
_OPERATION = re.compile(
    r"=|\d\s*[-+*/×÷xX–−]\s*\$?\d|\\(?:times|cdot|div|d?frac)|"
    r"\b(?:plus|minus|times|divided by|multiplied by|equals)\b", re.IGNORECASE)
_LABEL = re.compile(r"^[\s*#>-]*(?:step\s*\d+\s*[:.)]?|\d+\s*[.)](?=\s))[\s*]*", re.IGNORECASE)
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# rewritten before the equations are read: phrases that are arithmetic, and words that would
# leave a stray operator behind once the equation reader drops them ("free-throws",
# "$26/shirt")
_PHRASES = (
    (re.compile(r"\\(?:boxed|fbox|text|textbf|mathrm|mbox)\s*\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"(?<=[A-Za-z\d%])-(?=[A-Za-z])|(?<=[A-Za-z])-(?=\d)"), " "),
    (re.compile(r"(?<=[A-Za-z\d])\s*/\s*(?=[A-Za-z])"), " per "),
    (re.compile(rf"({_DIGITS})\s*(?:\\?%|percent)\s+of\s+(?=\$?\d)", re.IGNORECASE),
     r"\1 / 100 * "),
    (re.compile(r"\bhalf\s+of\s+(?=\$?\d)", re.IGNORECASE), "1 / 2 * "),
    (re.compile(rf"({_DIGITS})\s*(?:\\?%|percent\b)", re.IGNORECASE), r"\1 / 100"),
    (re.compile(r"\s[–—]\s"), " - "),  # dashes used as minus signs
)
_ANSWER_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$|^-?\.\d+$")
_ANSWER_FRACTION = re.compile(r"^(-?)\\frac\{(\d+)\}\{(\d+)\}$")
_LEADING_NUMBER = re.compile(r"^-?(?:\d+(?:\.\d+)?|\.\d+)")


def _number(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def _word_numbers(text: str) -> tuple[set[Fraction], set[Fraction]]:
    """(quantities, multipliers) written in words: ``twenty-five`` 25, ``two hundred`` 200,
    ``a hundred`` 100; ``twice`` 2, ``half`` 2 and 0.5, ``dozen`` 12."""
    quantities: set[Fraction] = set()
    multipliers: set[Fraction] = set()
    total = current = 0
    previous = ""  # the kind of the previous word of the run: unit, tens, scale, and; "" none

    def close() -> None:
        nonlocal total, current, previous
        if previous:
            quantities.add(Fraction(total + current))
        total = current = 0
        previous = ""

    for word in _WORDS.findall(text.lower()):
        if word in _UNITS or word in _TENS:
            kind = "unit" if word in _UNITS else "tens"
            # "twenty five" and "hundred twenty" go on a run; "five twenty", "one two" do not
            if previous in ("unit", "tens") and not (previous == "tens" and kind == "unit"
                                                     and word not in ("zero", "ten")):
                close()
            current += _UNITS.get(word) or _TENS.get(word, 0)
            previous = kind
        elif word in _SCALES:
            if not previous:
                current = 1  # "a hundred"
            if _SCALES[word] == 100:
                current *= 100
            else:
                total += current * _SCALES[word]
                current = 0
            previous = "scale"
        elif word == "and" and previous == "scale":
            previous = "and"  # "two hundred and fifty"
        else:
            if previous == "and":
                previous = "scale"
            close()
            multipliers.update(_MULTIPLIER_WORDS.get(word, ()))
    close()
    return quantities, multipliers


def problem_numbers(problem: str) -> tuple[set[Fraction], set[Fraction]]:
    """(facts, operands) of a problem: the quantities it states, and the further numbers it
    licenses as operands only (percent and fraction forms, multipliers, unit constants)."""
    facts: set[Fraction] = set()
    operands: set[Fraction] = set(ALWAYS_KNOWN)
    for match in _PROBLEM_NUMBER.finditer(problem):
        value = _number(match.group(1))
        facts.add(value)
        if match.group(2):  # a percent: 25% is 0.25 of it, leaves 0.75, raises to 1.25
            rate = value / 100
            operands.update({rate, 1 - rate, 1 + rate, 100 - value, 100 + value})
        if match.group(3):
            facts.add(value * _SCALES[match.group(3).lower()])
    for match in _FRACTION.finditer(problem):
        numerator, denominator = (int(g) for g in match.groups() if g is not None)
        if denominator:
            value = Fraction(numerator, denominator)
            facts.update({Fraction(numerator), Fraction(denominator)})
            operands.update({value, abs(1 - value)})
    quantities, multipliers = _word_numbers(problem)
    facts |= quantities
    operands |= multipliers
    lower = problem.lower()
    for value, patterns in UNIT_CONSTANTS:
        if all(re.search(pattern, lower) for pattern in patterns):
            operands.add(Fraction(value))
    return facts, operands - facts


def _step_numbers(text: str) -> list[tuple[Fraction, bool]]:
    """(number, written as a percent) for each number written in digits in a step."""
    text = _CALCULATOR.sub(" ", text)
    return [(_number(m.group(1)), bool(m.group(2))) for m in _STEP_NUMBER.finditer(text)]


def _answer_value(answer: str) -> tuple[Fraction, str] | None:
    """The number a final answer states (``$1,200``, ``50 pencils``, ``\\frac{1}{2}``,
    ``x = 5``) and how it is written; None when it states none."""
    text = normalize_answer(answer)
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    if _ANSWER_NUMBER.match(text):
        return Fraction(text), text
    match = _ANSWER_FRACTION.match(text)
    if match is not None:
        sign, numerator, denominator = match.groups()
        if not int(denominator):
            return None
        value = Fraction(int(numerator), int(denominator))
        return (-value if sign else value), text
    match = _LEADING_NUMBER.match(text)  # "50pencils": a unit normalize_answer does not know
    if match is not None and not re.match(r"[\d.^/{]", text[match.end():]):
        return Fraction(match.group(0)), match.group(0)
    return None


def _answers_computation(answer: Fraction, written: str, equation: Equation) -> bool:
    """Whether the answer is the equation's written result or its exact value (rounded as
    the answer is written: 3.33 for 10/3)."""
    if answer in (equation.result, equation.value):
        return True
    return equation.value.denominator != 1 and _agree(equation.value, written)


@dataclass
class _Walk:
    """What the steps so far have established."""

    facts: set[Fraction]  # stated by the problem or an earlier step
    operands: set[Fraction]  # also usable as operands
    # for a computed value, the operands it was computed from
    sources: dict[Fraction, frozenset[Fraction]] = field(default_factory=dict)
    computations: set[str] = field(default_factory=set)  # expressions computed, as written
    last: Equation | None = None

    def known(self, value: Fraction) -> bool:
        return value in self.facts or value in self.operands

    def score(self, text: str) -> float:
        body = _LABEL.sub("", text, count=1)
        arithmetic = body
        for pattern, replacement in _PHRASES:
            arithmetic = pattern.sub(replacement, arithmetic)
        equations = find_equations(arithmetic)
        answer = extract_answer(body)
        numbers = _step_numbers(body)
        if equations:
            verdict = self._score_equations(equations, answer)
        elif answer is not None:
            verdict = self._score_answer(answer)
        elif _OPERATION.search(body) or all(
                self.known(value) or (percent and self.known(value / 100))
                for value, percent in numbers):
            verdict = SCORE_NEUTRAL  # an operation that cannot be checked, or nothing new
        else:
            verdict = SCORE_UNSUPPORTED
        # whatever the verdict, what the step wrote is known from now on: a later step that
        # builds on it is judged on its own, so an error scores low where it is made
        self.facts.update(value for value, _ in numbers)
        return verdict

    def _score_equations(self, equations: list[Equation], answer: str | None) -> float:
        final = answer is not None
        verdict = SCORE_SOUND
        results: set[Fraction] = set()  # computed in this step so far
        computations: set[str] = set()
        for equation in equations:
            computation = re.sub(r"\s+", "", equation.expression)
            if not equation.holds:
                verdict = min(verdict, SCORE_WRONG)
            elif not all(self.known(op) or op in results for op in equation.operands):
                verdict = min(verdict, SCORE_UNGROUNDED)
            elif self._undoes(equation) or (computation in self.computations and not final):
                verdict = min(verdict, SCORE_NO_PROGRESS)
            # the written number is also a partial result when the right side goes on
            # computing (6 * 4 + 2 = 24 + 2 = 26)
            for value in (equation.result, equation.value, Fraction(equation.written)):
                results.add(abs(value))
                self.sources[abs(value)] = (self.sources.get(abs(value), frozenset()) |
                                            frozenset(equation.operands))
            computations.add(computation)
            self.last = equation
        self.computations |= computations
        self.facts |= results
        if answer is not None:
            verdict = min(verdict, self._score_answer(answer))
        return verdict

    def _undoes(self, equation: Equation) -> bool:
        """Whether the equation takes a computed value back to one of the numbers it was
        computed from, with the others (50 - 22 = 28 or 50 - 28 = 22 after 28 + 22 = 50), or
        cancels a number against itself (34 - 34 = 0)."""
        result = abs(equation.result)
        operands = equation.operands
        if len(operands) == 2 and operands[0] == operands[1] and result == 0:
            return True  # a number less itself: 34 - 34 = 0
        for k, operand in enumerate(equation.operands):
            parents = self.sources.get(operand, frozenset())
            others = equation.operands[:k] + equation.operands[k + 1:]
            if result in parents and all(other in parents for other in others):
                return True
        return False

    def _score_answer(self, answer: str) -> float:
        stated = _answer_value(answer)
        if stated is None:
            return SCORE_NEUTRAL  # not a number: nothing to compare
        value, written = stated
        if self.last is not None:
            faithful = _answers_computation(value, written, self.last)
        else:
            faithful = abs(value) in self.facts
        return SCORE_ANSWER_FAITHFUL if faithful else SCORE_ANSWER_UNFAITHFUL


def grounded_scores(problem: str, steps: Sequence[str]) -> list[float]:
    """The score in [0, 1] of each step of one solution to ``problem`` (see the module
    docstring for the rules)."""
    facts, operands = problem_numbers(problem)
    walk = _Walk(facts, operands)
    return [walk.score(text) for text in steps]


def _texts(steps: Iterable[Step]) -> list[str]:
    return [step.text for step in steps]


class GroundedScorer:
    name = "grounded"
    pointwise = True
    parameters = 0

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return ScoreBatch([grounded_scores(problem, _texts(steps)) for steps in solutions])
