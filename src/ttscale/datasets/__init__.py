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
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ttscale.errors import ConfigError, DatasetError
from ttscale.registry import unknown_name_message

__all__ = [
    "BUILTIN_DATASETS",
    "TRAIN_ONLY",
    "Dataset",
    "Problem",
    "SkippedRow",
    "builtin_data_path",
    "load_dataset",
]

logger = logging.getLogger(__name__)

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

MAX_LOGGED_SKIPS = 10
"""Malformed rows logged one by one; the rest are counted in one summary line."""

_USER_FILE_HINT = "give a path to a JSONL file with 'problem' and 'answer' fields"


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


# --------------------------------------------------------------------------------------------
# Reading JSONL
# --------------------------------------------------------------------------------------------


class _RowError(ValueError):
    pass


def _fields_found(row: dict[str, Any]) -> str:
    names = ", ".join(sorted(row)[:12])
    return f"fields found: {names}" if names else "the object is empty"


def _required_text(row: dict[str, Any], field: str) -> str:
    if field not in row or row[field] is None:
        raise _RowError(f"missing {field!r} ({_fields_found(row)})")
    value = row[field]
    if field == "answer" and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _RowError(f"'answer' is {value!r}, not a finite number")
            return str(int(value)) if value.is_integer() else repr(value)
        return str(value)
    if not isinstance(value, str):
        expected = "a string or a number" if field == "answer" else "a string"
        raise _RowError(f"{field!r} is {type(value).__name__}, expected {expected}")
    if not value.strip():
        raise _RowError(f"{field!r} is empty")
    return value.strip() if field == "answer" else value


def _optional_text(row: dict[str, Any], field: str) -> str | None:
    value = row.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _RowError(f"{field!r} is {type(value).__name__}, expected a string")
    return value


_LEVEL_TEXT = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)


def _optional_level(row: dict[str, Any]) -> int | None:
    value = row.get("level")
    if value is None:
        return None
    if isinstance(value, bool):
        raise _RowError("'level' is a boolean, expected an integer such as 3")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _LEVEL_TEXT.match(value)
        if match is not None:
            return int(match.group(1))
    raise _RowError(f"'level' is {value!r}, expected an integer such as 3")


def _optional_quantities(row: dict[str, Any]) -> tuple[str, ...]:
    values = row.get("quantities")
    if values is None:
        return ()
    if not isinstance(values, list):
        raise _RowError(f"'quantities' is {type(values).__name__}, expected a list of numbers")
    found = []
    for value in values:
        if isinstance(value, dict):
            value = value.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _RowError(f"'quantities' holds {value!r}, expected numbers or objects with "
                            "a numeric 'value'")
        found.append(str(value).strip())
    return tuple(found)


def _row_id(row: dict[str, Any], default: str) -> str:
    value = row.get("id")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _RowError(f"'id' is {type(value).__name__}, expected a string")
    value = str(value).strip()
    if not value:
        raise _RowError("'id' is empty")
    return value


def _read_jsonl(
    data: bytes, *, dataset: str, source: str
) -> tuple[tuple[Problem, ...], tuple[SkippedRow, ...]]:
    """Parse JSONL bytes into problems; malformed lines become :class:`SkippedRow`."""
    problems: list[Problem] = []
    skipped: list[SkippedRow] = []
    first_line_of_id: dict[str, int] = {}
    lines = data.split(b"\n")
    last_index = len(lines) - 1
    for index, raw in enumerate(lines):
        line_no = index + 1
        if not raw.strip():
            continue
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _RowError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if index == 0:
                text = text.lstrip("\ufeff")
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                if index == last_index:
                    raise _RowError(
                        "incomplete last line (no newline at the end of the file; was it cut "
                        f"off while being written?): invalid JSON: {exc.msg}"
                    ) from None
                raise _RowError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(row, dict):
                raise _RowError(f"not a JSON object but a {type(row).__name__}")
            problem = Problem(
                id=_row_id(row, f"{dataset}-{line_no}"),
                problem=_required_text(row, "problem"),
                answer=_required_text(row, "answer"),
                dataset=dataset,
                level=_optional_level(row),
                subject=_optional_text(row, "subject"),
                solution=_optional_text(row, "solution"),
                quantities=_optional_quantities(row),
            )
            first_use = first_line_of_id.get(problem.id)
            if first_use is not None:
                raise _RowError(f"duplicate id {problem.id!r} (first used on line {first_use})")
        except _RowError as exc:
            skipped.append(SkippedRow(line=line_no, reason=str(exc)))
            continue
        first_line_of_id[problem.id] = line_no
        problems.append(problem)

    for row in skipped[:MAX_LOGGED_SKIPS]:
        logger.warning("%s line %d skipped: %s", source, row.line, row.reason)
    if len(skipped) > MAX_LOGGED_SKIPS:
        logger.warning(
            "%s: %d more malformed lines skipped (%d in all; see Dataset.skipped)",
            source,
            len(skipped) - MAX_LOGGED_SKIPS,
            len(skipped),
        )
    if not problems:
        if skipped:
            first = skipped[0]
            raise DatasetError(
                f"{source} has no usable rows: all {len(skipped)} lines are malformed "
                f"(line {first.line}: {first.reason}); each line must be a JSON object with "
                "string fields 'problem' and 'answer'"
            )
        raise DatasetError(f"{source} is empty: expected JSONL rows with 'problem' and 'answer'")
    return tuple(problems), tuple(skipped)


def builtin_data_path(name: str):
    """The packaged file (an ``importlib.resources`` Traversable) of a built-in dataset."""
    return importlib.resources.files("ttscale") / "data" / BUILTIN_DATASETS[name]


@lru_cache(maxsize=None)
def _load_builtin(name: str) -> tuple[tuple[Problem, ...], tuple[SkippedRow, ...]]:
    canonical = _ALIASES.get(name, name)
    resource = builtin_data_path(name)
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"the built-in dataset {canonical!r} is missing from this installation "
            f"({BUILTIN_DATASETS[name]}: {exc.strerror or exc}); reinstall ttscale"
        ) from exc
    return _read_jsonl(data, dataset=canonical, source=f"builtin:{canonical}")


def _looks_like_path(name: str) -> bool:
    return (
        "/" in name
        or "\\" in name
        or name.startswith((".", "~"))
        or Path(name).suffix.lower() in (".jsonl", ".json", ".ndjson", ".txt")
    )


def _load_file(name_or_path: str) -> Dataset:
    path = Path(name_or_path).expanduser()
    if not path.exists():
        if _looks_like_path(name_or_path):
            raise DatasetError(f"dataset file not found: {name_or_path}")
        message = unknown_name_message("dataset", name_or_path, BUILTIN_DATASETS)
        raise DatasetError(f"{message.rstrip('.')}; or {_USER_FILE_HINT}.")
    if path.is_dir():
        raise DatasetError(f"dataset path {name_or_path} is a directory; {_USER_FILE_HINT}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"cannot read dataset file {name_or_path}: {exc.strerror or exc}"
        ) from exc
    if not data.strip():
        raise DatasetError(
            f"dataset file {name_or_path} is empty: expected JSONL rows with 'problem' and 'answer'"
        )
    problems, skipped = _read_jsonl(data, dataset=path.stem, source=str(path))
    return Dataset(name=path.stem, problems=problems, skipped=skipped, source=str(path))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _few(values: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


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
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer (got {limit!r}); omit it for all")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"offset must be an integer >= 0 (got {offset!r})")

    name_or_path = str(name_or_path)
    if name_or_path in BUILTIN_DATASETS:
        canonical = _ALIASES.get(name_or_path, name_or_path)
        problems, skipped = _load_builtin(name_or_path)
        dataset = Dataset(
            name=canonical, problems=problems, skipped=skipped, source=f"builtin:{canonical}"
        )
    else:
        dataset = _load_file(name_or_path)

    selected = list(dataset.problems)
    if ids is not None:
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
                f"{len(unknown)} id(s) not in dataset {dataset.name!r}: {_few(unknown)} "
                f"(ids look like {example!r})"
            )
        selected = [p for p in selected if p.id in wanted]
    if levels is not None:
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
                + (" among the requested ids" if ids is not None else "")
            )
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
