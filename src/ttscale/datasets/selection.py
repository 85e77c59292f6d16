"""Choosing problems from a loaded dataset: by id, by level, a seeded shuffle, then an
offset and a limit, in that order."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ttscale.datasets.problem import Dataset, Problem
from ttscale.errors import ConfigError, DatasetError

__all__ = ["check_paging", "select_problems"]


def check_paging(limit: int | None, offset: int) -> None:
    """Reject a ``limit`` below 1 or a negative ``offset`` before anything is loaded."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer (got {limit!r}); omit it for all")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"offset must be an integer >= 0 (got {offset!r})")


def select_problems(
    dataset: Dataset,
    *,
    ids: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    limit: int | None = None,
    seed: int | None = None,
    offset: int = 0,
) -> Dataset:
    """``dataset`` with only the selected problems (see :func:`ttscale.datasets.load_dataset`)."""
    selected = list(dataset.problems)
    if ids is not None:
        selected = _with_ids(selected, ids, dataset.name)
    if levels is not None:
        selected = _at_levels(selected, levels, dataset, among_ids=ids is not None)
    if seed is not None:
        random.Random(seed).shuffle(selected)
    if offset:
        if offset >= len(selected):
            raise ConfigError(
                f"offset {offset} is past the last problem: {len(selected)} problem(s) "
                "are selected before the offset"
            )
        selected = selected[offset:]
    if limit is not None:
        selected = selected[:limit]
    return Dataset(
        name=dataset.name,
        problems=tuple(selected),
        skipped=dataset.skipped,
        source=dataset.source,
    )


def _with_ids(selected: list[Problem], ids: Sequence[str], name: str) -> list[Problem]:
    """The problems whose id is in ``ids``, kept in dataset order; every id must exist."""
    if isinstance(ids, str):
        ids = [ids]
    wanted = {str(i) for i in ids}
    if not wanted:
        raise ConfigError("ids is empty: give at least one problem id, or omit it for all")
    known = {p.id for p in selected}
    unknown = [i for i in dict.fromkeys(str(i) for i in ids) if i not in known]
    if unknown:
        example = selected[0].id
        raise DatasetError(
            f"{len(unknown)} id(s) not in dataset {name!r}: {_few(unknown)} "
            f"(ids look like {example!r})"
        )
    return [p for p in selected if p.id in wanted]


def _at_levels(
    selected: list[Problem], levels: Sequence[int], dataset: Dataset, *, among_ids: bool
) -> list[Problem]:
    """The problems at one of ``levels``; at least one must be left."""
    wanted_levels = set()
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int):
            raise ConfigError(f"levels must be integers such as 1-5 (got {level!r})")
        wanted_levels.add(level)
    if not wanted_levels:
        raise ConfigError("levels is empty: give at least one level, or omit it for all")
    if all(p.level is None for p in dataset.problems):
        raise DatasetError(
            f"dataset {dataset.name!r} has no 'level' field, so it cannot be filtered by level"
        )
    selected = [p for p in selected if p.level in wanted_levels]
    if not selected:
        raise DatasetError(
            f"no problem in dataset {dataset.name!r} has level "
            f"{', '.join(str(v) for v in sorted(wanted_levels))}"
            + (" among the requested ids" if among_ids else "")
        )
    return selected


def _few(values: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")
