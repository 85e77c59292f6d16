"""An outcome scorer over the final answer, with no model: answer agreement.

A solution's final step scores the share of the scored solutions whose final answer is
equivalent to its own (self-consistency as a verifier); a solution with no final answer
scores 0 there. Steps before the last carry no outcome signal and get the neutral 0.5, so
with "last" aggregation this scorer ranks finished solutions by how many others agree."""

from __future__ import annotations

from collections.abc import Sequence

from ttscale.grading import extract_answer
from ttscale.rewards.base import ScoreBatch
from ttscale.search.aggregate import group_answers
from ttscale.steps import Step, writes_final_answer

NEUTRAL_SCORE = 0.5


class AnswerAgreementScorer:
    name = "agreement"
    pointwise = False
    parameters = 0

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        answers = [
            extract_answer(steps[-1].text) if steps and writes_final_answer(steps[-1].text)
            else None
            for steps in solutions
        ]
        shares = [0.0] * len(solutions)
        answered = sum(a is not None for a in answers)
        for group in group_answers(answers):
            for index in group:
                shares[index] = len(group) / answered
        batch = []
        for steps, answer, share in zip(solutions, answers, shares, strict=True):
            scores = [NEUTRAL_SCORE] * len(steps)
            if steps and answer is not None:
                scores[-1] = share
            elif steps and writes_final_answer(steps[-1].text):
                scores[-1] = 0.0
            batch.append(scores)
        return ScoreBatch(batch)
