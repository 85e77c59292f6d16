"""Scorers: one score in [0, 1] per step. Each PRM format lives in its own module here."""

from __future__ import annotations

from ttscale.registry import Registry
from ttscale.rewards.base import ScoreBatch, Scorer

__all__ = ["SCORERS", "ScoreBatch", "Scorer", "load_scorer"]

SCORERS: Registry[type] = Registry("scorer")
SCORERS.register("confidence", "ttscale.rewards.confidence:PolicyConfidenceScorer")
SCORERS.register("agreement", "ttscale.rewards.outcome:AnswerAgreementScorer")
SCORERS.register("arithmetic", "ttscale.rewards.arithmetic:ArithmeticScorer")


def load_scorer(name: str) -> Scorer | None:
    """A scorer by name; ``"none"`` means no scorer (majority vote and greedy need none)."""
    if name == "none":
        return None
    return SCORERS.get(name)()
