"""Records measured beforehand, taken into a run folder instead of being searched again: a
planner study (``ttscale plan calibrate --import-runs``) can start from ``ttscale run`` folders
that already hold its methods and budgets on its problems, and then runs only what is missing.

A source folder's record is taken only where it is the record this run would write: the
source ran the same dataset, policy, prompt and search settings, and the same scorer where the
method uses one. A method that uses no scorer (majority vote, DeepConf, ...) gives the same
record under any scorer and step aggregation, so for those two may differ. Records are copied,
not linked: the study folder holds every record its plan is built from.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ttscale.errors import ConfigError, RunStateError
from ttscale.records import (
    MANIFEST_FILE,
    RECORDS_FILE,
    RecordWriter,
    RunFolderLock,
    read_records,
)
from ttscale.run.runner import check_manifest, differing_fields
from ttscale.search import METHODS

logger = logging.getLogger(__name__)

# what a method that uses no scorer does not depend on
SCORER_ONLY_SETTINGS = ("step_aggregation",)


@dataclass
class ImportTally:
    """What one source folder gave: records taken, and records left with the reason."""

    source: Path
    imported: int = 0
    left: Counter[str] = field(default_factory=Counter)
    mismatched: int = 0  # of those left, records of other settings or another scorer

    def summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.left.items()))
        return (f"{self.source}: {self.imported} record(s) imported"
                + (f"; left: {reasons}" if reasons else ""))


def scorer_free(identity: dict) -> dict:
    """``identity`` without what only a scored method depends on."""
    settings = {k: v for k, v in identity.get("settings", {}).items()
                if k not in SCORER_ONLY_SETTINGS}
    return {**{k: v for k, v in identity.items() if k not in ("scorer", "plan")},
            "settings": settings}


def read_identity(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        identity = manifest["identity"]
        if not isinstance(identity, dict):
            raise TypeError("identity is not an object")
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a run folder (no {MANIFEST_FILE}); give the "
                          "--out folder of a `ttscale run`") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path} is unreadable ({error!r}); give the --out folder of a "
                          "`ttscale run`") from error
    return identity


def import_records(sources: Sequence[Path], run_dir: Path, identity: dict,
                   problem_ids: Sequence[str], jobs: Sequence[tuple[str, int]]
                   ) -> list[ImportTally]:
    """Copy into ``run_dir`` the records of ``sources`` that this run (``identity``, the
    ``jobs`` (method, budget) on ``problem_ids``) would write and has not written yet.

    A source that differs from the run in its dataset, policy or prompt is refused (it is
    another study, not a part of this one); one that differs in its settings or scorer gives
    only the records of the methods for which that makes no difference, and the tally says
    why the others were left."""
    wanted_problems, wanted_jobs = set(problem_ids), set(jobs)
    tallies = []
    with RunFolderLock(run_dir):
        check_manifest(run_dir, identity)  # records of other settings must not mix in
        done = {r["key"] for r in read_records(run_dir / RECORDS_FILE).records}
        with RecordWriter(run_dir / RECORDS_FILE) as writer:
            for source in sources:
                tally = _import_one(source, identity, wanted_problems, wanted_jobs, done,
                                    writer)
                logger.log(logging.WARNING if tally.mismatched else logging.INFO, "%s",
                           tally.summary())
                tallies.append(tally)
    return tallies


def _import_one(source: Path, identity: dict, problems: set[str],
                jobs: set[tuple[str, int]], done: set[str], writer: RecordWriter
                ) -> ImportTally:
    theirs = read_identity(source)
    other_study = [k for k in ("dataset", "policy", "prompt") if theirs.get(k) != identity.get(k)]
    if other_study:
        raise ConfigError(f"{source} ran another {' and '.join(other_study)} than this study "
                          f"({_shown(theirs, other_study)} against "
                          f"{_shown(identity, other_study)}); import only runs of the same "
                          "policy, prompt and dataset")
    differing = differing_fields(theirs, identity)
    # what every method depends on (differing here means differing above too)
    differing_for_all = differing_fields(scorer_free(theirs), scorer_free(identity))
    mismatch = ("records of a run with other settings: " + ", ".join(differing_for_all)
                if differing_for_all else
                "records of scored methods whose run differs in " + ", ".join(differing))
    tally = ImportTally(source)
    loaded = read_records(source / RECORDS_FILE)
    if loaded.bad_lines:
        tally.left["unreadable lines"] += len(loaded.bad_lines)
    for record in loaded.records:
        method, n = record.get("method"), record.get("n")
        if record.get("problem_id") not in problems or (method, n) not in jobs:
            tally.left["records of other problems, methods or budgets"] += 1
            continue
        if record["key"] in done:
            tally.left["records already in the study"] += 1
            continue
        if differing_for_all or (differing and METHODS[method].uses_scorer):
            tally.left[mismatch] += 1
            tally.mismatched += 1
            continue
        writer.write(record)
        done.add(record["key"])
        tally.imported += 1
    return tally


def _shown(identity: dict, keys: Sequence[str]) -> str:
    return ", ".join(json.dumps(identity.get(k), sort_keys=True) for k in keys)


def check_sources(sources: Sequence[Path]) -> None:
    """Fail before a model loads when a source is not a run folder."""
    for source in sources:
        read_identity(source)
        if not (source / RECORDS_FILE).exists():
            raise RunStateError(f"{source} has no {RECORDS_FILE}: the run wrote no record yet")
