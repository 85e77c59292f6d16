"""The arithmetic checker: equations found, evaluated exactly, never executed."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from ttscale.rewards import load_scorer
from ttscale.rewards.arithmetic import check_equations, evaluate, score_step
from ttscale.steps import Step


class TestCheckEquations:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Step 1: 3 sprints * 60 meters = 180 meters.", (1, 1)),
            ("Step 2: 180 meters / 3 sprints = 50 meters.", (1, 0)),
            ("12/60 = 0.2", (1, 1)),
            ("She makes <<48/2=24>>24 clips.", (1, 1)),
            ("She makes <<48/2=25>>25 clips.", (1, 0)),
            ("3 \\times 4 = 12", (1, 1)),
            ("3 \\times 4 = 13", (1, 0)),
            ("\\frac{1}{2} + \\frac{1}{4} = 0.75", (1, 1)),
            ("2^10 = 1024", (1, 1)),
            ("The total is $1,200 + $300 = $1,500.", (1, 1)),
            ("which is 0.25 * 40 = $10.", (1, 1)),
            ("10/3 = 3.33", (1, 1)),  # rounded as written
            ("10/3 = 3.2", (1, 0)),
            ("7/2 = 3", (1, 0)),  # an integer result is not a rounding licence
            ("2 * 3 = 6 * 2 = 12", (2, 2)),  # a running result
            ("2 * 3 = 3 * 2 = 6", (2, 2)),  # a true chain
            ("2 * 3 = 3 * 3 = 9", (2, 1)),
            ("x = 5", (0, 0)),
            ("The answer is \\boxed{19}.", (0, 0)),
            ("1:00 PM is 1:00 PM.", (0, 0)),
        ],
    )
    def test_counts(self, text, expected):
        assert check_equations(text) == expected

    def test_scores(self):
        assert score_step("3 * 8 = 24 and 24 - 5 = 19") == 1.0
        assert score_step("3 * 8 = 24 and 24 - 5 = 18") == 0.0
        assert score_step("Tom gives some away.") == 0.5


class TestEvaluate:
    def test_exact_fractions(self):
        assert evaluate("1/3 + 1/6") == Fraction(1, 2)
        assert evaluate("0.1 + 0.2") == Fraction(3, 10)

    @pytest.mark.parametrize("text", [
        "__import__('os').system('true')", "9**9**9**9", "1/0", "2**100", "abs(-3)", "3 4",
        "(" * 400 + "1" + ")" * 400,
    ])
    def test_refuses_what_is_not_bounded_arithmetic(self, text):
        assert evaluate(text) is None


def test_registered_as_a_pointwise_model_free_scorer():
    scorer = load_scorer("arithmetic")
    assert scorer.pointwise and scorer.parameters == 0
    batch = asyncio.run(scorer.score("p", [[Step("2 + 2 = 4"), Step("4 * 3 = 11")]]))
    assert batch.scores == [[1.0, 0.0]]


def test_a_result_written_with_leading_zeros_is_checked_not_a_crash():
    # Python's parser refuses "060"; the model writes it now and then
    assert check_equations("He has 5 * 12 = 060 pens.") == (1, 1)
    assert check_equations("He has 5 * 12 = 061 pens.") == (1, 0)
    assert check_equations("Then 007 + 3 = 10.") == (1, 1)
    assert evaluate("10.05 + 0.5") == Fraction("10.55")
