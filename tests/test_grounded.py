"""The grounded step verifier: numbers traced to the problem, on hand-written solutions."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from ttscale.rewards import CATALOGUE, canonical_spec, load_scorer, scorer_kind
from ttscale.rewards.arithmetic import find_equations
from ttscale.rewards.base import check_scores
from ttscale.rewards.grounded import (
    SCORE_ANSWER_FAITHFUL,
    SCORE_ANSWER_UNFAITHFUL,
    SCORE_NEUTRAL,
    SCORE_NO_PROGRESS,
    SCORE_SOUND,
    SCORE_UNGROUNDED,
    SCORE_UNSUPPORTED,
    SCORE_WRONG,
    GroundedScorer,
    grounded_scores,
    problem_numbers,
)
from ttscale.steps import Step

EMMA = "Emma has 28 pencils. Her friend gives her 22 more. How many pencils does Emma have now?"
TOM = ("Tom buys 3 boxes with 8 pencils in each box. He gives 5 pencils to his friend. His "
       "sister has twice as many pencils as Tom has left. How many pencils does his sister "
       "have?")
SARA = "Sara reads 15 pages every day. How many pages does she read in 2 weeks?"

ALL_GOOD = [SCORE_SOUND, SCORE_SOUND, SCORE_SOUND, SCORE_ANSWER_FAITHFUL]


def _numbers(*values) -> set[Fraction]:
    return {Fraction(v) for v in values}


def test_the_scores_are_ordered_as_documented():
    assert SCORE_WRONG < SCORE_UNGROUNDED <= SCORE_NO_PROGRESS < SCORE_NEUTRAL < SCORE_SOUND
    assert SCORE_UNSUPPORTED < SCORE_NEUTRAL
    assert SCORE_ANSWER_UNFAITHFUL < SCORE_NEUTRAL < SCORE_ANSWER_FAITHFUL


class TestRightSolutions:
    def test_every_step_of_a_right_solution_scores_one(self):
        steps = ["Step 1: Tom buys 3 * 8 = 24 pencils.",
                 "Step 2: After giving away 5, he has 24 - 5 = 19 pencils.",
                 "Step 3: His sister has 19 * 2 = 38 pencils.",
                 "The answer is \\boxed{38}."]
        assert grounded_scores(TOM, steps) == ALL_GOOD

    def test_a_one_step_solution(self):
        assert grounded_scores(EMMA, ["Step 1: Emma has 28 + 22 = 50 pencils.",
                                      "The answer is \\boxed{50}."]) == [1.0, 1.0]

    def test_a_constant_of_a_unit_the_problem_names(self):
        steps = ["Step 1: Two weeks have 2 * 7 = 14 days.",
                 "Step 2: She reads 15 * 14 = 210 pages.",
                 "The answer is \\boxed{210}."]
        assert grounded_scores(SARA, steps) == [1.0, 1.0, 1.0]

    def test_a_gsm8k_solution_with_calculator_marks_and_a_unit_conversion(self):
        problem = ("Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes "
                   "of babysitting. How much did she earn?")
        steps = ["Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.",
                 "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.",
                 "#### 10"]
        assert grounded_scores(problem, steps) == [1.0, 1.0, 1.0]

    def test_a_multi_step_gsm8k_solution(self):
        problem = ("Betty is saving money for a new wallet which costs $100. Betty has only half "
                   "of the money she needs. Her parents decided to give her $15 for that "
                   "purpose, and her grandparents twice as much as her parents. How much more "
                   "money does Betty need to buy the wallet?")
        steps = ["In the beginning, Betty has only 100 / 2 = $50.",
                 "Betty's grandparents gave her 15 * 2 = $30.",
                 "This means, Betty needs 100 - 50 - 30 - 15 = $5 more.",
                 "The answer is $5."]
        assert grounded_scores(problem, steps) == ALL_GOOD

    def test_equal_values_by_chance_are_progress(self):
        problem = ("Ann buys 3 shirts at $10 each and 2 hats at $15 each. How much does she "
                   "spend?")
        steps = ["Step 1: The shirts cost 3 * 10 = 30 dollars.",
                 "Step 2: The hats cost 2 * 15 = 30 dollars.",
                 "Step 3: She spends 30 + 30 = 60 dollars.",
                 "The answer is \\boxed{60}."]
        assert grounded_scores(problem, steps) == ALL_GOOD

    def test_a_chain_and_an_intermediate_result_in_one_step(self):
        steps = ["Step 1: Tom has 3 * 8 - 5 = 24 - 5 = 19 pencils left.",
                 "Step 2: His sister has 19 * 2 = 38 pencils.",
                 "The answer is \\boxed{38}."]
        assert grounded_scores(TOM, steps) == [1.0, 1.0, 1.0]

    def test_no_steps(self):
        assert grounded_scores(EMMA, []) == []


class TestEachErrorScoresLowAtItsStepOnly:
    def test_wrong_arithmetic(self):
        steps = ["Step 1: Tom buys 3 * 8 = 24 pencils.",
                 "Step 2: After giving away 5, he has 24 - 5 = 18 pencils.",
                 "Step 3: His sister has 18 * 2 = 36 pencils.",
                 "The answer is \\boxed{36}."]
        assert grounded_scores(TOM, steps) == [1.0, SCORE_WRONG, 1.0, 1.0]

    def test_an_operand_in_neither_the_problem_nor_a_step(self):
        assert grounded_scores(EMMA, ["Step 1: Emma has 28 + 12 = 40 pencils.",
                                      "The answer is \\boxed{40}."]) == [SCORE_UNGROUNDED, 1.0]
        steps = ["Step 1: Tom buys 3 * 8 = 24 pencils.",
                 "Step 2: After giving some away, he has 24 - 6 = 18 pencils.",
                 "Step 3: His sister has 18 * 2 = 36 pencils.",
                 "The answer is \\boxed{36}."]
        assert grounded_scores(TOM, steps) == [1.0, SCORE_UNGROUNDED, 1.0, 1.0]

    def test_a_step_that_undoes_the_work(self):
        steps = ["Step 1: Emma has 28 + 22 = 50 pencils.",
                 "Step 2: She has 50 - 22 = 28 more pencils.",
                 "The answer is \\boxed{28}."]
        assert grounded_scores(EMMA, steps) == [1.0, SCORE_NO_PROGRESS, 1.0]
        steps[1] = "Step 2: She has 50 - 28 = 22 more pencils."
        steps[2] = "The answer is \\boxed{22}."
        assert grounded_scores(EMMA, steps) == [1.0, SCORE_NO_PROGRESS, 1.0]

    def test_a_division_that_undoes_a_product(self):
        problem = "A box holds 4 rows of 6 eggs. How many eggs are in 3 boxes?"
        steps = ["Step 1: One box holds 4 * 6 = 24 eggs.",
                 "Step 2: Each row holds 24 / 6 = 4 eggs.",
                 "Step 3: Three boxes hold 24 * 3 = 72 eggs.",
                 "The answer is \\boxed{72}."]
        assert grounded_scores(problem, steps) == [1.0, SCORE_NO_PROGRESS, 1.0, 1.0]

    def test_a_number_cancelled_against_itself(self):
        steps = ["Step 1: Emma has 28 - 28 = 0 pencils left.", "The answer is \\boxed{0}."]
        assert grounded_scores(EMMA, steps) == [SCORE_NO_PROGRESS, 1.0]

    def test_a_repeated_computation(self):
        steps = ["Step 1: Emma has 28 + 22 = 50 pencils.",
                 "Step 2: So in total she has 28 + 22 = 50 pencils.",
                 "The answer is \\boxed{50}."]
        assert grounded_scores(EMMA, steps) == [1.0, SCORE_NO_PROGRESS, 1.0]

    def test_restating_the_last_computation_with_the_answer_is_no_repeat(self):
        steps = ["Step 1: Emma has 28 + 22 = 50 pencils.",
                 "The answer is 28 + 22 = \\boxed{50}."]
        assert grounded_scores(EMMA, steps) == [1.0, 1.0]

    def test_a_final_answer_that_is_not_the_computed_value(self):
        assert grounded_scores(EMMA, ["Step 1: Emma has 28 + 22 = 50 pencils.",
                                      "The answer is \\boxed{10}."]) == [
            1.0, SCORE_ANSWER_UNFAITHFUL]
        steps = ["Step 1: Tom buys 3 * 8 = 24 pencils.",
                 "Step 2: After giving away 5, he has 24 - 5 = 19 pencils.",
                 "Step 3: His sister has 19 * 2 = 38 pencils.",
                 "The answer is \\boxed{19}."]  # an earlier result is not the last one
        assert grounded_scores(TOM, steps) == [1.0, 1.0, 1.0, SCORE_ANSWER_UNFAITHFUL]

    def test_an_answer_in_the_computing_step(self):
        assert grounded_scores(EMMA, ["Emma has 28 + 22 = 50, so the answer is \\boxed{50}."]
                               ) == [1.0]
        assert grounded_scores(EMMA, ["Emma has 28 + 22 = 50, so the answer is \\boxed{40}."]
                               ) == [SCORE_ANSWER_UNFAITHFUL]

    def test_a_new_number_asserted_without_computation(self):
        steps = ["Step 1: Emma has 28 + 22 = 50 pencils.",
                 "Step 2: She also has 35 erasers.",
                 "The answer is \\boxed{50}."]
        assert grounded_scores(EMMA, steps) == [1.0, SCORE_UNSUPPORTED, 1.0]

    def test_known_numbers_restated_and_prose_are_neutral(self):
        steps = ["Step 1: Emma starts with 28 pencils and gets 22 more.",
                 "Step 2: We add them together.",
                 "Step 3: Emma has 28 + 22 = 50 pencils.",
                 "Step 4: So Emma has 50 pencils.",
                 "The answer is \\boxed{50}."]
        assert grounded_scores(EMMA, steps) == [SCORE_NEUTRAL, SCORE_NEUTRAL, 1.0,
                                                SCORE_NEUTRAL, 1.0]

    def test_an_operation_the_reader_cannot_check_is_no_assertion(self):
        assert grounded_scores(EMMA, ["She has 28 plus 22 which is 50 pencils."]) == [
            SCORE_NEUTRAL]


class TestTheProblemsNumbers:
    def test_digits_money_thousands_and_percent(self):
        facts, operands = problem_numbers(
            "A bike costs $1,200 and a helmet $45.50. The shop takes 25% off.")
        assert _numbers(1200, "45.5", 25) <= facts
        assert _numbers("0.25", "0.75", "1.25", 75, 100) <= operands

    def test_number_words(self):
        facts, operands = problem_numbers(
            "Twenty-five children and two hundred and fifty adults came, a hundred left, and "
            "three dozen eggs were eaten by one of them.")
        assert _numbers(25, 250, 100, 3, 1) <= facts
        assert Fraction(12) in operands

    def test_multiplier_words(self):
        _, operands = problem_numbers("She has twice as many, then triple, then half of a "
                                      "quarter of a third.")
        assert _numbers(2, 3, "0.5", 4, "0.25", "1/3") <= operands

    def test_fractions(self):
        facts, operands = problem_numbers("He ate 3/4 of the cake and \\frac{1}{2} of a pie.")
        assert _numbers(3, 4, 1, 2) <= facts
        assert _numbers("0.75", "0.25", "0.5") <= operands

    def test_a_bare_two_needs_a_word_that_licenses_it(self):
        facts, operands = problem_numbers("Sam has 10 apples and 5 pears.")
        assert Fraction(2) not in facts | operands
        for text in ("Sam has 10 apples and doubles them.", "Sam has a pair of 10 apples.",
                     "Both of Sam's bags hold 10 apples.", "Sam has two bags of 10 apples."):
            facts, operands = problem_numbers(text)
            assert Fraction(2) in facts | operands, text

    def test_unit_constants_only_with_their_unit(self):
        _, operands = problem_numbers("Sara reads 15 pages a day for 2 weeks.")
        assert _numbers(7, 24) <= operands
        _, operands = problem_numbers("Sara reads 15 pages and 2 books.")
        assert not _numbers(7, 24, 60, 100, 12) & operands

    def test_words_and_percent_are_grounded_in_steps(self):
        problem = ("Twenty-five students each bring three apples. Half of the apples are red. "
                   "How many apples are red?")
        steps = ["Step 1: They bring 25 * 3 = 75 apples.",
                 "Step 2: Half of them, 75 / 2 = 37.5, are red.",
                 "The answer is \\boxed{37.5}."]
        assert grounded_scores(problem, steps) == [1.0, 1.0, 1.0]
        problem_without_half = problem.replace("Half of the apples are red", "Some are red")
        assert grounded_scores(problem_without_half, steps)[1] == SCORE_UNGROUNDED

    @pytest.mark.parametrize("step", [
        "Step 1: The discount is 25% of 1,200 = 300 dollars.",
        "Step 1: The discount is $1,200 * 25% = $300.",
        "Step 1: The discount is 1200 * 0.25 = 300 dollars.",
        "Step 1: The discount is 1,200 * 25 / 100 = 300 dollars.",
    ])
    def test_percent_and_money_in_a_solution(self, step):
        problem = "A bike costs $1,200. It is on sale for 25% off. What is the sale price?"
        steps = [step, "Step 2: The sale price is 1200 - 300 = 900 dollars.",
                 "The answer is \\boxed{\\$900}."]
        assert grounded_scores(problem, steps) == [1.0, 1.0, 1.0]
        # paying 75% directly is grounded too
        assert grounded_scores(problem, ["Step 1: She pays 1200 * 0.75 = 900 dollars.",
                                         "The answer is \\boxed{900}."]) == [1.0, 1.0]

    def test_a_constant_without_its_unit_is_ungrounded(self):
        problem = "Sara reads 15 pages every day. How many pages does she read in 2 days?"
        steps = ["Step 1: She reads 15 * 7 = 105 pages.", "The answer is \\boxed{105}."]
        assert grounded_scores(problem, steps) == [SCORE_UNGROUNDED, 1.0]


class TestLatexAndAnswers:
    def test_times_and_frac(self):
        problem = "Tom buys 3 boxes of 8 pencils and gives half of them away. How many are left?"
        steps = ["Step 1: Tom buys $3 \\times 8 = 24$ pencils.",
                 "Step 2: He keeps $\\frac{24}{2} = 12$ pencils.",
                 "The answer is $\\boxed{12}$."]
        assert grounded_scores(problem, steps) == [1.0, 1.0, 1.0]
        steps[1] = "Step 2: He keeps $\\frac{24}{2} = 13$ pencils."
        assert grounded_scores(problem, steps) == [1.0, SCORE_WRONG, 1.0]

    def test_boxed_result_inside_an_equation(self):
        assert grounded_scores(EMMA, ["Emma has $28 + 22 = \\boxed{50}$ pencils."]) == [1.0]

    def test_a_rounded_answer(self):
        problem = "Three friends share 10 cookies equally. How many does each get?"
        steps = ["Step 1: Each gets 10 / 3 = 3.33 cookies.", "The answer is 3.33."]
        assert grounded_scores(problem, steps) == [1.0, 1.0]

    def test_an_answer_without_computation_must_be_a_known_number(self):
        problem = "Tom has 5 apples. How many apples does Tom have?"
        assert grounded_scores(problem, ["The answer is \\boxed{5}."]) == [1.0]
        assert grounded_scores(problem, ["The answer is \\boxed{6}."]) == [
            SCORE_ANSWER_UNFAITHFUL]

    def test_an_answer_that_is_no_number_is_neutral(self):
        assert grounded_scores(EMMA, ["Step 1: Emma has 28 + 22 = 50 pencils.",
                                      "The answer is \\boxed{x+y}."]) == [1.0, SCORE_NEUTRAL]

    def test_model_output_is_never_executed(self, tmp_path):
        marker = tmp_path / "ran"
        step = f"__import__('pathlib').Path('{marker}').touch() = 0 and 28 + 22 = 50"
        assert grounded_scores(EMMA, [step]) == [1.0]
        assert not marker.exists()


def test_find_equations_exposes_operands_value_and_written_result():
    first, second = find_equations("Tom has 3 * 8 = 24 pencils and 24 - 5 = 18 left.")
    assert first.operands == (3, 8) and first.value == 24 and first.result == 24
    assert first.holds and first.written == "24"
    assert second.operands == (24, 5) and second.value == 19 and second.result == 18
    assert not second.holds
    (chain_start, chain_end) = find_equations("2 * 3 = 3 * 2 = 6")
    assert chain_start.holds and chain_start.result == 6 and chain_end.result == 6


class TestRegistered:
    def test_a_pointwise_model_free_scorer_in_the_catalogue(self):
        assert "grounded" in {entry.name for entry in CATALOGUE}
        assert canonical_spec("ground") == "grounded"
        assert scorer_kind("grounded") == "model-free"

    def test_load_and_score_a_batch(self):
        scorer = load_scorer("grounded", policy=None)
        assert isinstance(scorer, GroundedScorer)
        assert scorer.pointwise and scorer.parameters == 0
        solutions = [[Step("Step 1: Emma has 28 + 22 = 50 pencils."),
                      Step("The answer is \\boxed{50}.")],
                     [Step("Step 1: Emma has 28 + 12 = 40 pencils."),
                      Step("The answer is \\boxed{10}.")],
                     []]
        batch = asyncio.run(scorer.score(EMMA, solutions))
        check_scores(batch, solutions, scorer.name)
        assert batch.scores == [[1.0, 1.0], [SCORE_UNGROUNDED, SCORE_ANSWER_UNFAITHFUL], []]

    def test_listed_by_ttscale_prms(self):
        from typer.testing import CliRunner

        from ttscale.cli.main import app

        result = CliRunner().invoke(app, ["prms"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "ground | grounded" in result.output
