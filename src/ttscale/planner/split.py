"""Calibration and evaluation halves of a problem set.

The split depends on the set of problem ids and a seed alone: problems are ordered by a hash
of ``seed:id`` and the first share calibrates, so it is the same whatever order the problems
were loaded in, and it owes nothing to their order in the dataset (which often follows
difficulty or topic)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from ttscale.errors import ConfigError

T = TypeVar("T")


def _rank(seed: int, problem_id: str) -> str:
    return hashlib.sha256(f"{seed}:{problem_id}".encode()).hexdigest()


def split_ids(ids: Sequence[str], fraction: float = 0.5, seed: int = 0
              ) -> tuple[list[str], list[str]]:
    """(calibration ids, evaluation ids), each in the input's order."""
    if not 0 < fraction < 1:
        raise ConfigError(f"the calibration fraction must be between 0 and 1, got {fraction}")
    if len(set(ids)) != len(ids):
        raise ConfigError("problem ids must be unique to split them")
    ordered = sorted(ids, key=lambda i: _rank(seed, i))
    cut = round(len(ids) * fraction)
    if len(ids) >= 2:
        cut = min(max(cut, 1), len(ids) - 1)  # both halves non-empty
    calibration = set(ordered[:cut])
    return ([i for i in ids if i in calibration], [i for i in ids if i not in calibration])
