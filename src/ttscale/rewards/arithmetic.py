"""An exact arithmetic checker: no model, just the equations a step writes.

It finds equalities such as ``12/60 = 0.2``, ``<<48/2=24>>``, ``3 \\times 4 = 12`` or
``180 meters / 3 sprints = 60 meters`` (unit words are dropped), evaluates each side exactly
with ``fractions.Fraction`` through a whitelist over Python's AST — never ``eval`` — and
compares them, allowing for the rounding the written result implies (``10/3 = 3.33``).

A step scores 1.0 when every equation it writes holds, 0.0 when any fails, and the neutral
0.5 when it writes none that can be checked. Useful on GSM8K, where small policies often
reason in the right direction and then multiply wrongly."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ttscale.rewards.base import ScoreBatch
from ttscale.steps import Step

NEUTRAL_SCORE = 0.5
MAX_EXPONENT = 12
MAX_MAGNITUDE = Fraction(10) ** 30

_LATEX = [
    (re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(times|cdot|ast)"), "*"),
    (re.compile(r"\\div"), "/"),
    (re.compile(r"\\left|\\right|\\!|\\,|\\;|\\\$|\$"), ""),
    (re.compile(r"[×∗·]"), "*"),
    (re.compile(r"÷"), "/"),
    (re.compile(r"−"), "-"),
    (re.compile(r"(?<=\d)\s*[xX]\s*(?=\d)"), "*"),  # 3 x 4
    (re.compile(r"(?<=\d),(?=\d{3}\b)"), ""),  # thousands separators
    (re.compile(r"\^"), "**"),
]
# where one claim ends and the next begins
_BOUNDARY = re.compile(r"<<|>>|[;:\n]|\.(?!\d)|,(?!\d{3}\b)")
_WORD = re.compile(r"[A-Za-z_'’]+\.?|%")
_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?|^\s*-?\.\d+")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/()]+$")
_OPERAND = re.compile(r"\d+(?:\.\d+)?|\.\d+")


class _NotArithmeticError(Exception):
    pass


def _evaluate(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Add):
            result = left + right
        elif isinstance(node.op, ast.Sub):
            result = left - right
        elif isinstance(node.op, ast.Mult):
            result = left * right
        elif isinstance(node.op, ast.Div):
            if right == 0:
                raise _NotArithmeticError("division by zero")
            result = left / right
        elif isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > MAX_EXPONENT:
                raise _NotArithmeticError("exponent out of range")
            if left == 0 and right < 0:
                raise _NotArithmeticError("division by zero")
            result = left ** int(right)
        else:
            raise _NotArithmeticError(type(node.op).__name__)
        if abs(result) > MAX_MAGNITUDE:
            raise _NotArithmeticError("too large")
        return result
    raise _NotArithmeticError(type(node).__name__)


def evaluate(expression: str) -> Fraction | None:
    """The exact value of a plain arithmetic expression, or None if it is not one."""
    expression = expression.strip()
    if not expression or not _ARITHMETIC.match(expression.replace("**", "*")):
        return None
    expression = _LEADING_ZEROS.sub("", expression)  # "007" is 7, not a syntax error
    try:
        return _evaluate(ast.parse(expression, mode="eval"))
    except (SyntaxError, _NotArithmeticError, ValueError, ZeroDivisionError, OverflowError,
            RecursionError):
        return None


def _clean(side: str) -> str:
    side = _WORD.sub(" ", side)
    return re.sub(r"\s+", " ", side).strip()


def _arithmetic_tail(side: str) -> str:
    """The longest suffix of ``side`` that is an arithmetic expression ("24 and 24 - 5" ->
    "24 - 5" once the words are gone)."""
    for start in (m.start() for m in re.finditer(r"(?:(?<=\s)|^)[\d(.\-]", side)):
        tail = side[start:]
        if evaluate(tail) is not None:
            return tail
    return ""


def _has_operator(expression: str) -> bool:
    return bool(re.search(r"\d\s*(\*\*|[+*/]|-)\s*[\d(.]|\)\s*[+\-*/]", expression))


def _decimals(written: str) -> int:
    written = written.strip()
    return len(written.split(".", 1)[1]) if "." in written else 0


def written_number(text: str) -> Fraction | None:
    """A plain written number (``12``, ``-0.5``, ``.5``, and ``060``, which Python's parser
    refuses) as an exact fraction."""
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        return None


def _agree(computed: Fraction, written: str) -> bool:
    value = written_number(written)
    if value is None:
        return True  # nothing to compare with
    if computed == value:
        return True
    # a written result with d decimals may be the computed value rounded to d decimals
    tolerance = Fraction(1, 2 * 10 ** _decimals(written))
    return abs(computed - value) < tolerance and computed.denominator != 1


@dataclass(frozen=True)
class Equation:
    """One checked equality: ``expression`` (the evaluated side, cleaned: ``3 * 60``), the
    numbers written in it, its exact value, the result the text claims for it and whether
    that claim holds. ``result`` is the number written after "=", or the value itself when
    the right side is an equal expression of its own (``2 * 3 = 3 * 2 = 6``)."""

    expression: str
    operands: tuple[Fraction, ...]
    value: Fraction
    written: str
    result: Fraction
    holds: bool


def _operands(expression: str) -> tuple[Fraction, ...]:
    return tuple(Fraction(number) for number in _OPERAND.findall(expression))


def find_equations(text: str) -> list[Equation]:
    """The equations written in ``text`` that can be checked, in order."""
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    equations: list[Equation] = []
    for claim in _BOUNDARY.split(text):
        if "=" not in claim or "==" in claim:
            continue
        sides = [_clean(side) for side in claim.split("=")]
        for k in range(len(sides) - 1):
            left, right = sides[k], sides[k + 1]
            left = _arithmetic_tail(left)  # a side may start with prose or a result
            # the result written after "=" is the number right after it; a middle side of a
            # chain may also be an expression equal to the left (2 * 3 = 3 * 2 = 6), or a
            # running result that goes on computing (2 * 3 = 6 * 2 = 12)
            match = _NUMBER.match(right)
            leading = match.group(0) if match else ""
            whole = right if k + 1 < len(sides) - 1 else ""
            value = evaluate(left)
            if value is None or not leading or not _has_operator(left):
                continue
            written = written_number(leading)
            if written is None:
                continue
            if _agree(value, leading):
                holds, result = True, written
            elif _has_operator(whole) and evaluate(whole) == value:
                holds, result = True, value
            else:
                holds, result = False, written
            equations.append(Equation(left, _operands(left), value, leading.strip(), result,
                                      holds))
    return equations


def check_equations(text: str) -> tuple[int, int]:
    """(equations checked, equations that hold) in ``text``."""
    equations = find_equations(text)
    return len(equations), sum(equation.holds for equation in equations)


def score_step(text: str) -> float:
    checked, correct = check_equations(text)
    if checked == 0:
        return NEUTRAL_SCORE
    return 1.0 if correct == checked else 0.0


class ArithmeticScorer:
    name = "arithmetic"
    pointwise = True
    parameters = 0

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return ScoreBatch([[score_step(step.text) for step in steps] for steps in solutions])
