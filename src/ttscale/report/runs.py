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
from ttscale.records import MANIFEST_FILE, RECORDS_FILE

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("problem_id", "method", "n", "correct", "candidates", "ledger")


@dataclass
class RunData:
    path: Path
    run_id: str  # the folder's name, made unique among the runs of one report
    digest: str  # first 8 hex digits of the sha256 of the run's identity
    manifest: dict
    records: list[dict]  # without their trees, which stay on disk until the viewer reads them
    skipped: list[str] = field(default_factory=list)  # one line per record left out, and why
    offsets: dict[str, int] = field(default_factory=dict)  # record key -> byte offset

    def trees(self, records: list[dict]) -> list[list[dict]]:
        """The search trees of ``records`` (records of this run), read back from the file."""
        trees = []
        with (self.path / RECORDS_FILE).open("rb") as handle:
            for record in records:
                handle.seek(self.offsets[record["key"]])
                trees.append(json.loads(handle.readline()).get("tree") or [])
        return trees

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
    records, offsets, skipped = _read_without_trees(records_path)
    for line in skipped:
        logger.warning("%s skipped", line)
    if not records:
        raise ConfigError(f"{records_path} holds no usable record: run `ttscale run` into "
                          f"{path} first, or give another folder")
    identity = json.dumps(manifest.get("identity", {}), sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return RunData(path=path, run_id=path.resolve().name, digest=digest, manifest=manifest,
                   records=records, skipped=skipped, offsets=offsets)


def _read_without_trees(path: Path) -> tuple[list[dict], dict[str, int], list[str]]:
    """Every usable record, its tree left on disk (trees are most of a run's bytes: a report
    of 500 problems x 256 samples would otherwise hold gigabytes), with the byte offset of
    its line; and one message per line left out."""
    records, offsets, skipped = [], {}, []
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                reason = getattr(error, "msg", None) or "not UTF-8"
                skipped.append(f"{path} line {number}: not valid JSON ({reason})")
                continue
            if not isinstance(record, dict) or "key" not in record:
                skipped.append(f"{path} line {number}: not a ttscale record (no 'key')")
                continue
            missing = [name for name in REQUIRED_FIELDS if name not in record]
            if missing:
                skipped.append(f"{path} record {record['key']}: no {', '.join(missing)}")
                continue
            if record["key"] in offsets:  # a duplicate would count the problem twice
                skipped.append(f"{path} record {record['key']}: a second copy of this key")
                continue
            record.pop("tree", None)
            offsets[record["key"]] = start
            records.append(record)
    return records, offsets, skipped


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
