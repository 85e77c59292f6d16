"""Run folders as a report reads them: the manifest, the readable records, and a run id.

A record that cannot be used is reported (with its line or key) and skipped; a folder without
records is an error that says what to give instead."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ttscale.errors import ConfigError
from ttscale.records import MANIFEST_FILE, RECORDS_FILE, read_records

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("problem_id", "method", "n", "correct", "candidates", "ledger")


@dataclass
class RunData:
    path: Path
    run_id: str  # the folder's name, made unique among the runs of one report
    digest: str  # first 8 hex digits of the sha256 of the run's identity
    manifest: dict
    records: list[dict]
    skipped: list[str] = field(default_factory=list)  # one line per record left out, and why

    @property
    def policy(self) -> str:
        model = self.manifest.get("model") or {}
        identity = self.manifest.get("identity", {}).get("policy", {})
        return model.get("name") or identity.get("name") or "unknown policy"

    @property
    def parameters(self) -> int | None:
        model = self.manifest.get("model") or {}
        identity = self.manifest.get("identity", {}).get("policy", {})
        return model.get("parameters") or identity.get("parameters")

    @property
    def scorer(self) -> str | None:
        return self.manifest.get("identity", {}).get("scorer")

    @property
    def dataset(self) -> str | None:
        return self.manifest.get("identity", {}).get("dataset")

    @property
    def label(self) -> str:
        return f"{self.run_id} ({self.digest})"


def load_run(path: Path) -> RunData:
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder: give the folder a `ttscale run` wrote "
                          f"(it holds {RECORDS_FILE} and {MANIFEST_FILE})")
    records_path = path / RECORDS_FILE
    if not records_path.exists():
        raise ConfigError(f"{path} has no {RECORDS_FILE}: give the folder a `ttscale run` wrote")
    manifest: dict = {}
    manifest_path = path / MANIFEST_FILE
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            logger.warning("%s is not valid JSON (%s): the report goes on without the run's "
                           "settings", manifest_path, error.msg)
    else:
        logger.warning("%s has no %s: the report goes on without the run's settings",
                       path, MANIFEST_FILE)
    loaded = read_records(records_path)
    skipped = [f"{records_path} line {number}: {reason}" for number, reason in loaded.bad_lines]
    records = []
    seen: set[str] = set()
    for record in loaded.records:
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            skipped.append(f"{records_path} record {record['key']}: no {', '.join(missing)}")
            continue
        if record["key"] in seen:  # a duplicate would count the problem twice
            skipped.append(f"{records_path} record {record['key']}: a second copy of this key")
            continue
        seen.add(record["key"])
        records.append(record)
    for line in skipped[len(loaded.bad_lines):]:
        logger.warning("%s skipped", line)
    if not records:
        raise ConfigError(f"{records_path} holds no usable record: run `ttscale run` into "
                          f"{path} first, or give another folder")
    identity = json.dumps(manifest.get("identity", {}), sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return RunData(path=path, run_id=path.resolve().name, digest=digest, manifest=manifest,
                   records=records, skipped=skipped)


def load_runs(paths: list[Path]) -> list[RunData]:
    if not paths:
        raise ConfigError("give at least one run folder")
    runs = [load_run(path) for path in paths]
    resolved = [run.path.resolve() for run in runs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError("the same run folder is given twice: give each run once")
    taken: dict[str, int] = {}
    for run in runs:  # two folders of the same name in different places
        count = taken.get(run.run_id, 0)
        taken[run.run_id] = count + 1
        if count:
            run.run_id = f"{run.run_id}-{count + 1}"
    return runs
