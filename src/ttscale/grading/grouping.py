"""Grouping a list of answers into classes of equivalent ones, for votes and agreement."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ttscale.grading.equivalence import answers_equivalent

__all__ = ["Equivalence", "group_answers"]

Equivalence = Callable[[str, str], bool]
"""Are two answers the same? :func:`~ttscale.grading.answers_equivalent` unless replaced."""


def group_answers(
    answers: Sequence[str | None], equivalent: Equivalence | None = None
) -> list[list[int]]:
    """Indices of equivalent answers grouped together, in order of first appearance.

    Each answer is compared with one representative per group, so k answers in g groups cost
    at most k·g equivalence checks (cached by the grader)."""
    equivalent = equivalent or answers_equivalent
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
