"""The policy's own step confidence: the geometric-mean probability of a step's tokens.

Free to compute (the log-probabilities come with generation) and model-agnostic; a weak but
real verifier signal for small policies that have no PRM."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ttscale.rewards.base import ScoreBatch
from ttscale.steps import Step

NEUTRAL_SCORE = 0.5


def step_confidence(step: Step) -> float:
    """exp(mean token log-prob); neutral when the engine gave no log-probs for the step."""
    if not step.token_logprobs:
        return NEUTRAL_SCORE
    mean = sum(step.token_logprobs) / len(step.token_logprobs)
    return min(1.0, max(0.0, math.exp(mean)))


class PolicyConfidenceScorer:
    name = "confidence"
    pointwise = True
    parameters = 0  # reads log-probs the policy already produced

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return ScoreBatch([[step_confidence(step) for step in steps] for steps in solutions])
