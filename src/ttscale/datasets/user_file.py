"""Loading a user's own JSONL file of problems, with messages that tell a mistyped built-in
name from a missing, unreadable or empty file."""

from __future__ import annotations

from pathlib import Path

from ttscale.datasets.builtin import BUILTIN_DATASETS
from ttscale.datasets.jsonl import read_jsonl
from ttscale.datasets.problem import Dataset
from ttscale.errors import DatasetError
from ttscale.registry import unknown_name_message

__all__ = ["load_user_file"]

_USER_FILE_HINT = "give a path to a JSONL file with 'problem' and 'answer' fields"


def load_user_file(name_or_path: str) -> Dataset:
    """The dataset in a JSONL file, named after the file's stem."""
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
    problems, skipped = read_jsonl(data, dataset=path.stem, source=str(path))
    return Dataset(name=path.stem, problems=problems, skipped=skipped, source=str(path))


def _looks_like_path(name: str) -> bool:
    """Was a file meant (rather than a mistyped built-in name)?"""
    return (
        "/" in name
        or "\\" in name
        or name.startswith((".", "~"))
        or Path(name).suffix.lower() in (".jsonl", ".json", ".ndjson", ".txt")
    )
