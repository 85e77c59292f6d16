"""Aggregation, as pure functions.

Step scores → one solution score (``last``, ``min``, ``mean``, ``prod``), and scored solutions
→ one answer (``prm_max``, ``prm_vote``, ``majority``). Equivalent answers vote together: the
grader's equivalence decides, not string equality."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ttscale.grading import Equivalence, group_answers
from ttscale.settings import (
    ANSWER_AGGREGATIONS,
    STEP_AGGREGATIONS,
    AnswerAggregation,
    StepAggregation,
)

if TYPE_CHECKING:
    from ttscale.search.result import Candidate


def aggregate_step_scores(scores: Sequence[float], mode: StepAggregation) -> float:
    """One score for a solution from its step scores. An empty solution scores 0."""
    if mode not in STEP_AGGREGATIONS:
        raise ValueError(f"unknown step aggregation {mode!r}; expected one of {STEP_AGGREGATIONS}")
    if not scores:
        return 0.0
    if mode == "last":
        return float(scores[-1])
    if mode == "min":
        return float(min(scores))
    if mode == "mean":
        return float(sum(scores) / len(scores))
    return float(math.prod(scores))  # "prod", the one mode left


@dataclass(frozen=True)
class Selection:
    """The chosen answer, the index of the solution that stands for it, and the vote weight
    each answer group received (keyed by its representative answer)."""

    answer: str | None
    index: int | None
    votes: dict[str, float]


def select_answer(
    answers: Sequence[str | None],
    scores: Sequence[float],
    mode: AnswerAggregation,
    equivalent: Equivalence | None = None,
) -> Selection:
    """Pick the final answer among solutions. Solutions without an answer do not vote; if none
    has an answer the best-scoring solution is still chosen (its answer is ``None``).

    Ties go to the group seen first, so the result is deterministic."""
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")
    if mode not in ANSWER_AGGREGATIONS:
        raise ValueError(f"unknown answer aggregation {mode!r}; expected one of "
                         f"{ANSWER_AGGREGATIONS}")
    if not answers:
        return Selection(None, None, {})
    groups = group_answers(answers, equivalent)
    if not groups:
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return Selection(None, best, {})
    if mode == "prm_max":
        weights = [max(scores[i] for i in group) for group in groups]
    elif mode == "prm_vote":
        weights = [sum(scores[i] for i in group) for group in groups]
    else:
        weights = [float(len(group)) for group in groups]
    winner = max(range(len(groups)), key=lambda g: (weights[g], -g))
    group = groups[winner]
    index = max(group, key=lambda i: (scores[i], -i))
    votes = {answers[g[0]]: w for g, w in zip(groups, weights, strict=True)}  # type: ignore[misc]
    return Selection(answers[index], index, votes)


def choose(candidates: Sequence[Candidate], step_mode: str, answer_mode: str
           ) -> tuple[Selection, list[float]]:
    """The answer the aggregations select among scored (or, unscored, voted) candidates, and
    each candidate's solution score (0 when the vote is by count)."""
    answers = [c.answer for c in candidates]
    if answer_mode == "majority" or any(c.step_scores is None for c in candidates):
        scores = [0.0] * len(candidates)
        answer_mode = "majority"
    else:
        scores = [aggregate_step_scores(c.step_scores or (), step_mode)  # type: ignore[arg-type]
                  for c in candidates]
    return select_answer(answers, scores, answer_mode), scores  # type: ignore[arg-type]
