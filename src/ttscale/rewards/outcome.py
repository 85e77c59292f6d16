"""An outcome scorer over the final answer, with no model: answer agreement.

A solution whose last step gives a final answer scores, at that step, the share of all the
solutions scored with it whose final answer is equivalent to its own (self-consistency as a
verifier); a boxed step whose answer cannot be read scores 0. Every other step carries no
outcome signal and gets the neutral 0.5, so with "last" aggregation this scorer ranks
finished solutions by how many others agree. The share is over all scored solutions, so a
lone early answer among unfinished partial solutions does not look like a consensus."""

from __future__ import annotations

from collections.abc import Sequence

from ttscale.grading import extract_answer, group_answers
from ttscale.rewards.base import ScoreBatch
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
        for group in group_answers(answers):
            for index in group:
                shares[index] = len(group) / len(solutions)
        batch = []
        for steps, answer, share in zip(solutions, answers, shares, strict=True):
            scores = [NEUTRAL_SCORE] * len(steps)
            if steps and answer is not None:
                scores[-1] = share
            elif steps and writes_final_answer(steps[-1].text):
                scores[-1] = 0.0
            batch.append(scores)
        return ScoreBatch(batch)
