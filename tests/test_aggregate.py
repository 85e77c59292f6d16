"""Aggregation (step scores -> solution score -> answer) and the model-free scorers."""

from __future__ import annotations

import asyncio
import math

import pytest

from ttscale.rewards.confidence import PolicyConfidenceScorer, step_confidence
from ttscale.rewards.outcome import AnswerAgreementScorer
from ttscale.search.aggregate import (
    ANSWER_AGGREGATIONS,
    aggregate_step_scores,
    choose,
    group_answers,
    select_answer,
)
from ttscale.search.result import Candidate
from ttscale.steps import Step


class TestAggregateStepScores:
    SCORES = [0.9, 0.2, 0.6]

    @pytest.mark.parametrize(("mode", "expected"), [
        ("last", 0.6), ("min", 0.2), ("mean", (0.9 + 0.2 + 0.6) / 3), ("prod", 0.9 * 0.2 * 0.6),
    ])
    def test_modes(self, mode, expected):
        assert aggregate_step_scores(self.SCORES, mode) == pytest.approx(expected)

    def test_modes_differ_on_the_same_scores(self):
        values = {m: aggregate_step_scores(self.SCORES, m) for m in ("last", "min", "mean", "prod")}
        assert len(set(values.values())) == 4

    def test_single_step(self):
        for mode in ("last", "min", "mean", "prod"):
            assert aggregate_step_scores([0.3], mode) == pytest.approx(0.3)

    @pytest.mark.parametrize("mode", ["last", "min", "mean", "prod"])
    def test_empty_scores_zero(self, mode):
        assert aggregate_step_scores([], mode) == 0.0

    def test_returns_plain_floats(self):
        assert type(aggregate_step_scores((1, 1), "prod")) is float

    @pytest.mark.parametrize("scores", [[0.5], []])
    def test_unknown_mode(self, scores):
        with pytest.raises(ValueError, match="unknown step aggregation 'max'"):
            aggregate_step_scores(scores, "max")  # type: ignore[arg-type]


class TestGroupAnswers:
    def test_default_equivalence_is_the_graders(self):
        answers = ["1/2", "3", "0.5", None, "\\frac{1}{2}", "3.0", "4"]
        assert group_answers(answers) == [[0, 2, 4], [1, 5], [6]]

    def test_uses_the_equivalence_given(self):
        answers = ["A", "b", "a", "B"]
        assert group_answers(answers, lambda x, y: x.lower() == y.lower()) == [[0, 2], [1, 3]]
        assert group_answers(answers, lambda x, y: True) == [[0, 1, 2, 3]]
        assert group_answers(["1/2", "0.5"], lambda x, y: False) == [[0], [1]]

    def test_equal_strings_group_without_asking(self):
        assert group_answers(["x", "x"], lambda x, y: False) == [[0, 1]]

    def test_compares_with_one_representative_per_group(self):
        seen = []

        def equivalent(a, b):
            seen.append((a, b))
            return abs(int(a) - int(b)) <= 1  # not transitive: 1~2, 2~3, 1!~3

        assert group_answers(["1", "2", "3"], equivalent) == [[0, 1], [2]]
        assert {b for _, b in seen} == {"1"}  # "3" was never compared with "2"

    def test_none_does_not_vote(self):
        assert group_answers([None, "5", None]) == [[1]]
        assert group_answers([None, None]) == []


class TestSelectAnswer:
    # "1": one solution, the best score; "2": two, the best score sum; "3": three, the most
    ANSWERS = ["1", "2", "2", "3", "3", "3"]
    SCORES = [0.95, 0.7, 0.9, 0.2, 0.4, 0.3]

    def test_prm_max_picks_the_best_single_solution(self):
        selection = select_answer(self.ANSWERS, self.SCORES, "prm_max")
        assert (selection.answer, selection.index) == ("1", 0)
        assert selection.votes == pytest.approx({"1": 0.95, "2": 0.9, "3": 0.4})

    def test_prm_vote_sums_scores_per_answer(self):
        selection = select_answer(self.ANSWERS, self.SCORES, "prm_vote")
        assert (selection.answer, selection.index) == ("2", 2)  # the group's best solution
        assert selection.votes == pytest.approx({"1": 0.95, "2": 1.6, "3": 0.9})

    def test_majority_counts_solutions(self):
        selection = select_answer(self.ANSWERS, self.SCORES, "majority")
        assert (selection.answer, selection.index) == ("3", 4)
        assert selection.votes == {"1": 1.0, "2": 2.0, "3": 3.0}

    def test_equivalent_answers_vote_together(self):
        answers = ["0.5", "7", "1/2", "7.5", "\\frac{1}{2}"]
        selection = select_answer(answers, [0.2, 0.9, 0.3, 0.1, 0.4], "prm_vote")
        assert selection.answer == "\\frac{1}{2}" and selection.index == 4
        assert selection.votes == pytest.approx({"0.5": 0.9, "7": 0.9, "7.5": 0.1})
        split = select_answer(answers, [0.2, 0.9, 0.3, 0.1, 0.4], "prm_vote",
                              equivalent=lambda a, b: False)
        assert split.answer == "7"

    def test_ties_go_to_the_group_seen_first(self):
        for mode in ANSWER_AGGREGATIONS:
            assert select_answer(["5", "6"], [0.5, 0.5], mode).answer == "5"
            assert select_answer(["6", "5"], [0.5, 0.5], mode).answer == "6"
        # and within a group, to the first solution with the best score
        assert select_answer(["4", "4", "4"], [0.1, 0.8, 0.8], "prm_max").index == 1

    def test_none_answers_do_not_vote(self):
        answers = [None, None, "4", "5"]
        scores = [0.9, 0.9, 0.1, 0.2]
        majority = select_answer(answers, scores, "majority")
        assert (majority.answer, majority.index) == ("4", 2)
        assert majority.votes == {"4": 1.0, "5": 1.0}
        assert select_answer(answers, scores, "prm_max").answer == "5"

    def test_no_answer_at_all_still_names_the_best_solution(self):
        for mode in ANSWER_AGGREGATIONS:
            selection = select_answer([None, None, None], [0.2, 0.9, 0.9], mode)
            assert (selection.answer, selection.index, selection.votes) == (None, 1, {})

    def test_no_solutions(self):
        selection = select_answer([], [], "prm_vote")
        assert (selection.answer, selection.index, selection.votes) == (None, None, {})

    def test_length_mismatch(self):
        with pytest.raises(ValueError, match="2 answers but 1 scores"):
            select_answer(["1", "2"], [0.5], "majority")

    def test_unknown_mode(self):
        with pytest.raises(ValueError, match="unknown answer aggregation"):
            select_answer(["1"], [0.5], "best")  # type: ignore[arg-type]


def candidate(answer: str | None, scores: tuple[float, ...] | None) -> Candidate:
    """A candidate with one step per score, the last one boxing ``answer``."""
    count = len(scores) if scores else 1
    last = f"so \\boxed{{{answer}}}" if answer is not None else "no answer yet"
    steps = tuple(Step(f"step {k}") for k in range(count - 1)) + (Step(last),)
    return Candidate(node_id=0, steps=steps, step_scores=scores, finish_reason="stop")


class TestChoose:
    def test_step_aggregation_feeds_the_answer_choice(self):
        candidates = [candidate("1", (0.3, 0.9)), candidate("2", (0.6, 0.7))]
        last, last_scores = choose(candidates, "last", "prm_max")
        low, min_scores = choose(candidates, "min", "prm_max")
        assert (last.answer, last_scores) == ("1", [0.9, 0.7])
        assert (low.answer, min_scores) == ("2", [0.3, 0.6])

    def test_majority_ignores_scores(self):
        candidates = [candidate("1", (0.9,)), candidate("2", (0.1,)), candidate("2", (0.1,))]
        selection, scores = choose(candidates, "last", "majority")
        assert (selection.answer, selection.index, scores) == ("2", 1, [0.0, 0.0, 0.0])
        assert choose(candidates, "last", "prm_max")[0].answer == "1"

    def test_unscored_candidates_fall_back_to_majority(self):
        candidates = [candidate("1", (0.9,)), candidate("2", None), candidate("2", None)]
        selection, scores = choose(candidates, "last", "prm_max")
        assert (selection.answer, scores) == ("2", [0.0, 0.0, 0.0])
        assert selection.votes == {"1": 1.0, "2": 2.0}

    def test_no_candidates(self):
        selection, scores = choose([], "last", "prm_vote")
        assert (selection.answer, selection.index, scores) == (None, None, [])


def steps(*texts: str) -> list[Step]:
    return [Step(t) for t in texts]


class TestAnswerAgreementScorer:
    def score(self, solutions):
        return asyncio.run(AnswerAgreementScorer().score("problem", solutions)).scores

    def test_last_step_scores_the_share_that_agrees(self):
        scores = self.score([
            steps("a", "so \\boxed{1/2}"),
            steps("b", "c", "thus \\boxed{0.5}"),
            steps("\\boxed{3}"),
            steps("d", "\\boxed{\\frac{1}{2}}"),
        ])
        assert scores == [[0.5, 0.75], [0.5, 0.5, 0.75], [0.25], [0.5, 0.75]]

    def test_unparseable_boxed_answer_scores_zero(self):
        scores = self.score([steps("a", "\\boxed{}"), steps("\\boxed{2}"), steps("\\boxed{2}")])
        assert scores[0] == [0.5, 0.0]
        assert scores[1] == scores[2] and scores[1][0] > 0.5

    def test_unfinished_solutions_are_neutral(self):
        scores = self.score([steps("a", "b"), steps("the answer is 4"), steps("\\boxed{4}")])
        assert scores[:2] == [[0.5, 0.5], [0.5]]
        assert scores[2][0] == pytest.approx(1 / 3)  # one of the three agrees with itself

    def test_empty_solution(self):
        scores = self.score([[], steps("\\boxed{1}"), steps("\\boxed{1}")])
        assert scores[0] == [] and len(scores[1]) == 1 and scores[1] == scores[2]

    def test_declares_itself_not_pointwise(self):
        scorer = AnswerAgreementScorer()
        assert scorer.pointwise is False and scorer.parameters == 0


class TestPolicyConfidenceScorer:
    def test_geometric_mean_probability(self):
        step = Step("x", 3, (-0.1, -0.2, -0.6))
        assert step_confidence(step) == pytest.approx(math.exp(-0.3))

    def test_neutral_without_logprobs(self):
        assert step_confidence(Step("x", 2, None)) == 0.5
        assert step_confidence(Step("x", 0, ())) == 0.5

    def test_certain_tokens_score_one(self):
        assert step_confidence(Step("x", 2, (0.0, 0.0))) == 1.0

    def test_scores_every_step_of_every_solution(self):
        solutions = [[Step("a", 1, (-1.0,)), Step("b", 1, None)], [Step("c", 2, (-0.5, -1.5))]]
        batch = asyncio.run(PolicyConfidenceScorer().score("problem", solutions))
        assert batch.scores == [[pytest.approx(math.exp(-1.0)), 0.5],
                                [pytest.approx(math.exp(-1.0))]]
        assert batch.tokens.computed == 0


class TestAgreementShare:
    def test_lone_answer_among_unfinished_is_not_a_consensus(self):
        import asyncio

        from ttscale.rewards.outcome import AnswerAgreementScorer
        from ttscale.steps import Step

        solutions = [[Step("Step 1: x")], [Step("Step 1: y")], [Step("so \\boxed{4}")],
                     [Step("Step 1: z")]]
        batch = asyncio.run(AnswerAgreementScorer().score("p", solutions))
        assert batch.scores[2] == [0.25]
        assert batch.scores[0] == [0.5]
