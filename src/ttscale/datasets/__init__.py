"""Math benchmark problems: the built-in datasets shipped with the package and user JSONL files.

Built-in datasets (sources and licenses in ``ttscale/data/README.md`` and ``LICENSES.md``):

- ``math500``: MATH-500, 500 problems with ``level`` (1-5) and ``subject``;
- ``aime24``: AIME 2024 I and II, 30 problems (integer answers, some zero-padded);
- ``gsm8k`` (alias ``gsm8k_test``): GSM8K test, 1319 problems;
- ``gsm8k_train``: GSM8K train, 7473 problems;
- ``ladder`` (alias ``ladder_test``) and ``ladder_train``: the difficulty ladder's templated
  word problems (:mod:`ttscale.datasets.ladder`), ``level`` = number of operations, every
  intermediate quantity in ``quantities``.

``gsm8k_train`` and ``ladder_train`` are for training and calibration only (:data:`TRAIN_ONLY`).

A user file is JSONL, one object per line, with string fields ``problem`` and ``answer``
(a numeric ``answer`` is converted to a string) and optional ``id``, ``level``, ``subject``,
``solution`` and ``quantities`` (the true intermediate values, in order: numbers, strings or
objects with a ``value``). Malformed lines are skipped, reported in
:attr:`Dataset.skipped` and logged.

Modules: :mod:`problem` (the records), :mod:`rows` (checking one row), :mod:`jsonl` (reading
a file's lines), :mod:`builtin` and :mod:`user_file` (where a dataset comes from),
:mod:`selection` (ids, levels, shuffle, offset and limit) and :mod:`ladder` (the generator).
"""

from __future__ import annotations

from collections.abc import Sequence

from ttscale.datasets.builtin import (
    BUILTIN_DATASETS,
    TRAIN_ONLY,
    builtin_data_path,
    load_builtin,
)
from ttscale.datasets.jsonl import MAX_LOGGED_SKIPS as MAX_LOGGED_SKIPS
from ttscale.datasets.problem import Dataset, Problem, SkippedRow
from ttscale.datasets.selection import check_paging, select_problems
from ttscale.datasets.user_file import load_user_file

__all__ = [
    "BUILTIN_DATASETS",
    "TRAIN_ONLY",
    "Dataset",
    "Problem",
    "SkippedRow",
    "builtin_data_path",
    "load_dataset",
]


def load_dataset(
    name_or_path: str,
    *,
    ids: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    limit: int | None = None,
    seed: int | None = None,
    offset: int = 0,
) -> Dataset:
    """Load a built-in dataset by name, or a user JSONL file by path, and select problems.

    Selection is applied in this order: ``ids`` (kept in dataset order), ``levels``, a
    shuffle with ``random.Random(seed)`` when ``seed`` is not None, then ``offset`` and
    ``limit``.

    Raises:
        DatasetError: unknown name, unreadable/empty file, no usable rows, unknown ids,
            or no problem left after the ``ids``/``levels`` filters.
        ConfigError: ``limit < 1``, ``offset < 0`` or an ``offset`` past the last problem.
    """
    check_paging(limit, offset)
    name_or_path = str(name_or_path)
    if name_or_path in BUILTIN_DATASETS:
        dataset = load_builtin(name_or_path)
    else:
        dataset = load_user_file(name_or_path)
    return select_problems(
        dataset, ids=ids, levels=levels, limit=limit, seed=seed, offset=offset
    )
