"""Run records on disk: one JSON object per line, appended and flushed as each completes.

A run killed at any moment leaves at most one partial last line, which the next open drops
(with a warning) before appending; any other unreadable line is reported and skipped, never
silently lost."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ttscale.errors import RunStateError

logger = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
# one line per problem that failed (engine or scorer errors): what failed is on disk, apart
# from the records, and a rerun tries those problems again
FAILURES_FILE = "failures.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclass
class RecordLoad:
    records: list[dict] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def read_records(path: Path) -> RecordLoad:
    """Every readable record of a records file; bad lines are reported with their number."""
    result = RecordLoad()
    if not path.exists():
        return result
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                result.bad_lines.append((number, f"not valid JSON ({error.msg})"))
                continue
            if not isinstance(record, dict) or "key" not in record:
                result.bad_lines.append((number, "not a ttscale record (no 'key')"))
                continue
            result.records.append(record)
    for number, reason in result.bad_lines:
        logger.warning("%s line %d skipped: %s", path, number, reason)
    return result


def drop_partial_tail(path: Path) -> bool:
    """Cut an unterminated last line (a record cut off by a kill). Returns whether one was cut."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return False
        data_end = handle.seek(0, os.SEEK_END)
        position = data_end
        chunk = 4096
        while position > 0:  # find the last newline from the end
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        else:
            keep = 0
        handle.truncate(keep)
    logger.warning("%s: dropped an incomplete last record (%d bytes) left by an interrupted run",
                   path, data_end - keep)
    return True


class RecordWriter:
    """Appends records durably: each line is written whole, flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        drop_partial_tail(path)
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write a JSON file so that a reader sees the old or the new file, never half of one."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


LOCK_FILE = ".lock"


class RunFolderLock:
    """One writer per run folder: an exclusive OS lock (``flock``) on ``.lock`` in the folder,
    held while a run writes its records. The OS drops it when the holder exits or is killed,
    so an interrupted run never leaves a stale lock behind; the file keeps the holder's pid
    for the message a second writer gets."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._file = None

    def __enter__(self) -> RunFolderLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise RunStateError(
                f"{self.folder} is being written by another ttscale process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}: wait for it to finish, or "
                "give this run another --out folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()  # closing the last descriptor releases the lock
            self._file = None
