"""Run folders packed beside a study's results and unpacked from there: the records behind its
tables stay with them, so the study resumes, and its tables rebuild, after its run folders
(under the git-ignored ``runs/``) are gone."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path


def restore(out: Path, archive: Path) -> None:
    """Unpack an archived run that is not here, so that the run resumes from its records."""
    saved = archive / out.name
    if (out / "records.jsonl").exists() or not (saved / "records.jsonl.gz").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(saved / "manifest.json", out / "manifest.json")
    with gzip.open(saved / "records.jsonl.gz", "rb") as packed, \
            open(out / "records.jsonl", "wb") as plain:
        shutil.copyfileobj(packed, plain)


def archive_run(out: Path, archive: Path) -> None:
    """The run's manifest and records, gzipped (no time stamp, so unchanged records pack to
    the same bytes)."""
    saved = archive / out.name
    saved.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "manifest.json", saved / "manifest.json")
    with open(out / "records.jsonl", "rb") as plain, \
            open(saved / "records.jsonl.gz", "wb") as target, \
            gzip.GzipFile(filename="", mode="wb", fileobj=target, mtime=0) as packed:
        shutil.copyfileobj(plain, packed)
