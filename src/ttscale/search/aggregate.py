"""Aggregation, as pure functions.

Step scores → one solution score (``last``, ``min``, ``mean``, ``prod``), and scored solutions
→ one answer (``prm_max``, ``prm_vote``, ``majority``). Equivalent answers vote together: the
grader's equivalence decides, not string equality."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

StepAggregation = Literal["last", "min", "mean", "prod"]
AnswerAggregation = Literal["prm_max", "prm_vote", "majority"]
STEP_AGGREGATIONS: tuple[str, ...] = get_args(StepAggregation)
ANSWER_AGGREGATIONS: tuple[str, ...] = get_args(AnswerAggregation)

Equivalence = Callable[[str, str], bool]


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


def _default_equivalence() -> Equivalence:
    from ttscale.grading import answers_equivalent

    return answers_equivalent


def group_answers(
    answers: Sequence[str | None], equivalent: Equivalence | None = None
) -> list[list[int]]:
    """Indices of equivalent answers grouped together, in order of first appearance.

    Each answer is compared with one representative per group, so k answers in g groups cost
    at most k·g equivalence checks (cached by the grader)."""
    equivalent = equivalent or _default_equivalence()
    groups: list[list[int]] = []
    representatives: list[str] = []
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        for group, representative in zip(groups, representatives, strict=True):
            if answer == representative or equivalent(answer, representative):
                group.append(index)
                break
        else:
            groups.append([index])
            representatives.append(answer)
    return groups


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
