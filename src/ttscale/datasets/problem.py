"""The records a dataset is made of: problems, the rows that had to be skipped, and the
dataset that holds both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Dataset", "Problem", "SkippedRow"]


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str
    dataset: str
    """``"math500"``, ``"aime24"``, ``"gsm8k"``, ``"gsm8k_train"``, or a user file's stem."""
    level: int | None = None
    """Difficulty where known: MATH's level (1-5), the ladder's number of operations."""
    subject: str | None = None
    solution: str | None = None
    quantities: tuple[str, ...] = ()
    """The true intermediate quantities a solution computes, in order (the last is the
    answer); known for the ladder's problems, so each step's correctness is exact."""


@dataclass(frozen=True)
class SkippedRow:
    """A line of a JSONL file that could not be used (1-based line number)."""

    line: int
    reason: str


@dataclass(frozen=True)
class Dataset:
    name: str
    problems: tuple[Problem, ...]
    skipped: tuple[SkippedRow, ...]
    source: str
    """The file's path, or ``"builtin:<name>"``."""

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)
