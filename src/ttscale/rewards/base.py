"""The scorer protocol: one score in [0, 1] per step.

A scorer reads a problem and partial or whole solutions (lists of ``Step``) and returns a
score per step, with the tokens it spent so the ledger can charge it. Real PRMs each keep
their input format and read-out in one file of this package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ttscale.compute import TokenCount
from ttscale.steps import Step


@dataclass(frozen=True)
class ScoreBatch:
    """``scores[i][k]`` is the score of step ``k`` of solution ``i``, in [0, 1]."""

    scores: list[list[float]]
    tokens: TokenCount = TokenCount()


@runtime_checkable
class Scorer(Protocol):
    name: str
    # True when a solution's scores do not depend on the other solutions scored with it, so a
    # subset's scores can be read off a larger batch's
    pointwise: bool

    @property
    def parameters(self) -> int | None:
        """Parameters of the scorer's own model (0 when it runs none), for the FLOPs ledger."""
        ...

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch: ...


def check_scores(batch: ScoreBatch, solutions: Sequence[Sequence[Step]], name: str) -> ScoreBatch:
    """Reject a scorer answer of the wrong shape or range: a silent misalignment of scores and
    steps would ruin every result downstream."""
    if len(batch.scores) != len(solutions):
        raise ValueError(f"scorer {name} returned {len(batch.scores)} score lists "
                         f"for {len(solutions)} solutions")
    for i, (scores, steps) in enumerate(zip(batch.scores, solutions, strict=True)):
        if len(scores) != len(steps):
            raise ValueError(f"scorer {name} returned {len(scores)} scores for solution {i} "
                             f"with {len(steps)} steps")
        for k, value in enumerate(scores):
            # NaN fails this test too: a score that is no number is refused, never read as 0
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"scorer {name} returned score {value!r} for step {k} of "
                                 f"solution {i}: scores must be numbers in [0, 1]; the scorer's "
                                 "model or server is faulty (check its output for this step)")
    return batch
