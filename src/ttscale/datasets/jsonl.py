"""Reading a JSONL file of problems: each line becomes a problem or a skipped row, skipped
rows are logged, and a file without a single usable row is an error."""

from __future__ import annotations

import json
import logging
from typing import Any

from ttscale.datasets.problem import Problem, SkippedRow
from ttscale.datasets.rows import RowError, problem_from_row
from ttscale.errors import DatasetError

__all__ = ["MAX_LOGGED_SKIPS", "read_jsonl"]

# Records carry the package's name, the one users (and tests) filter on.
logger = logging.getLogger(__package__)

MAX_LOGGED_SKIPS = 10
"""Malformed rows logged one by one; the rest are counted in one summary line."""


def read_jsonl(
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
            row = _json_object(raw, first=index == 0, last=index == last_index)
            problem = problem_from_row(row, dataset=dataset, line_no=line_no)
            first_use = first_line_of_id.get(problem.id)
            if first_use is not None:
                raise RowError(f"duplicate id {problem.id!r} (first used on line {first_use})")
        except RowError as exc:
            skipped.append(SkippedRow(line=line_no, reason=str(exc)))
            continue
        first_line_of_id[problem.id] = line_no
        problems.append(problem)
    _log_skipped(skipped, source)
    _require_usable_rows(problems, skipped, source)
    return tuple(problems), tuple(skipped)


def _json_object(raw: bytes, *, first: bool, last: bool) -> dict[str, Any]:
    """The JSON object on one line. ``first``: a byte order mark may precede it; ``last``:
    invalid JSON there is most likely a file cut off while being written."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if first:
        text = text.lstrip("\ufeff")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        if last:
            raise RowError(
                "incomplete last line (no newline at the end of the file; was it cut "
                f"off while being written?): invalid JSON: {exc.msg}"
            ) from None
        raise RowError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(row, dict):
        raise RowError(f"not a JSON object but a {type(row).__name__}")
    return row


def _log_skipped(skipped: list[SkippedRow], source: str) -> None:
    for row in skipped[:MAX_LOGGED_SKIPS]:
        logger.warning("%s line %d skipped: %s", source, row.line, row.reason)
    if len(skipped) > MAX_LOGGED_SKIPS:
        logger.warning(
            "%s: %d more malformed lines skipped (%d in all; see Dataset.skipped)",
            source,
            len(skipped) - MAX_LOGGED_SKIPS,
            len(skipped),
        )


def _require_usable_rows(
    problems: list[Problem], skipped: list[SkippedRow], source: str
) -> None:
    if problems:
        return
    if skipped:
        first = skipped[0]
        raise DatasetError(
            f"{source} has no usable rows: all {len(skipped)} lines are malformed "
            f"(line {first.line}: {first.reason}); each line must be a JSON object with "
            "string fields 'problem' and 'answer'"
        )
    raise DatasetError(f"{source} is empty: expected JSONL rows with 'problem' and 'answer'")
