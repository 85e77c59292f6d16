"""The datasets shipped in ``ttscale/data``: their names, aliases, which are for training
only, and loading one (read once per process)."""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

from ttscale.datasets.jsonl import read_jsonl
from ttscale.datasets.problem import Dataset, Problem, SkippedRow
from ttscale.errors import DatasetError

__all__ = ["BUILTIN_DATASETS", "TRAIN_ONLY", "builtin_data_path", "load_builtin"]

BUILTIN_DATASETS: dict[str, str] = {
    "math500": "math500.jsonl",
    "aime24": "aime24.jsonl",
    "gsm8k": "gsm8k_test.jsonl",
    "gsm8k_test": "gsm8k_test.jsonl",
    "gsm8k_train": "gsm8k_train.jsonl",
    "ladder": "ladder_test.jsonl",
    "ladder_test": "ladder_test.jsonl",
    "ladder_train": "ladder_train.jsonl",
}
"""Built-in dataset name -> file in ``ttscale/data``. ``gsm8k_test`` is an alias of ``gsm8k``."""

_ALIASES = {"gsm8k_test": "gsm8k", "ladder_test": "ladder"}

TRAIN_ONLY = frozenset({"gsm8k_train", "ladder_train"})
"""Built-in datasets meant for training and calibration, never for reporting accuracy."""


def builtin_data_path(name: str):
    """The packaged file (an ``importlib.resources`` Traversable) of a built-in dataset."""
    return importlib.resources.files("ttscale") / "data" / BUILTIN_DATASETS[name]


def load_builtin(name: str) -> Dataset:
    """The whole built-in dataset ``name`` (a key of :data:`BUILTIN_DATASETS`), under its
    canonical name when ``name`` is an alias."""
    canonical = _ALIASES.get(name, name)
    problems, skipped = _read_builtin(name)
    return Dataset(
        name=canonical, problems=problems, skipped=skipped, source=f"builtin:{canonical}"
    )


@lru_cache(maxsize=None)
def _read_builtin(name: str) -> tuple[tuple[Problem, ...], tuple[SkippedRow, ...]]:
    canonical = _ALIASES.get(name, name)
    resource = builtin_data_path(name)
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"the built-in dataset {canonical!r} is missing from this installation "
            f"({BUILTIN_DATASETS[name]}: {exc.strerror or exc}); reinstall ttscale"
        ) from exc
    return read_jsonl(data, dataset=canonical, source=f"builtin:{canonical}")
