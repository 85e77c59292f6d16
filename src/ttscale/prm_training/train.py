"""``ttscale prm train``: a value head on the policy's hidden states, from automatic labels.

Features are the base model's hidden states at each step's read position (the value-head
format of :mod:`ttscale.rewards.value_head`), cached in the output folder so that retraining
or training on more labels computes only what is new. Problems, not steps, are split into
training and validation, so no validation problem is seen in training. The head, its
manifest (base model, data, label method, settings, validation metrics and the problems of
each split) and the validation predictions are written to the output folder."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ttscale.errors import ConfigError
from ttscale.prm_training.head import FitSettings, ValueHead, auroc, bce, fit
from ttscale.prm_training.labels import MANIFEST_FILE as LABELS_MANIFEST
from ttscale.prm_training.labels import read_label_manifest, read_labels
from ttscale.records import write_json_atomic
from ttscale.rewards.value_head import MANIFEST_FILE, STEP_TOKEN, gguf_fingerprint, step_features

logger = logging.getLogger(__name__)

FEATURES_FILE = "features.npz"
LABEL_KINDS = ("soft", "hard")


@dataclass
class StepTable:
    """One row per labelled step."""

    features: np.ndarray  # (steps, hidden)
    soft: np.ndarray  # Monte-Carlo success rate
    hard: np.ndarray  # any rollout correct
    problem: np.ndarray  # problem id of each row
    last: np.ndarray  # the solution's last step (labelled by its own answer)

    def rows(self, problems: set[str]) -> StepTable:
        keep = np.array([p in problems for p in self.problem], dtype=bool)
        return StepTable(self.features[keep], self.soft[keep], self.hard[keep],
                         self.problem[keep], self.last[keep])

    def __len__(self) -> int:
        return len(self.soft)


def _solution_rows(record: dict) -> list[tuple[list[str], list[dict]]]:
    """(steps, labels) of each usable solution; a malformed record raises ValueError."""
    rows = []
    for solution in record["solutions"]:
        steps, labels = solution["steps"], solution["labels"]
        if len(steps) != len(labels):
            raise ValueError(f"{len(steps)} steps but {len(labels)} labels")
        if steps:
            rows.append((steps, labels))
    return rows


def step_table(records: Sequence[dict], reader, cache: Path | None = None,
               progress: Callable[[int, int], None] | None = None) -> StepTable:
    """Features and labels of every labelled step (a ``null`` label, a step exact labels
    could not check, is left out; its text still precedes the steps after it); problems
    whose features are cached (for the same base model) are read from ``cache``, the rest
    computed and added to it."""
    fingerprint = gguf_fingerprint(reader.path)
    cached: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            if str(data["fingerprint"]) == fingerprint:
                starts = data["starts"]
                for i, problem in enumerate(data["problems"]):
                    cached[str(problem)] = data["features"][starts[i]:starts[i + 1]]
    features, soft, hard, problems, last = [], [], [], [], []
    new = 0
    for number, record in enumerate(records, start=1):
        try:
            solutions = _solution_rows(record)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("labels of problem %s skipped: %s", record.get("key"), exc)
            continue
        key = str(record["key"])
        count = sum(len(steps) for steps, _ in solutions)
        rows = cached.get(key)
        if rows is None or len(rows) != count:
            rows = np.concatenate([step_features(reader, record["problem"], steps)[0]
                                   for steps, _ in solutions]) if solutions else \
                np.empty((0, reader.n_embd), np.float32)
            cached[key] = rows
            new += 1
        keep = [item is not None for _, labels in solutions for item in labels]
        features.append(rows if all(keep) else rows[np.array(keep, dtype=bool)])
        for _, labels in solutions:
            for index, item in enumerate(labels):
                if item is None:
                    continue
                soft.append(float(item["soft"]))
                hard.append(bool(item["hard"]))
                last.append(index == len(labels) - 1)
                problems.append(key)
        if progress is not None:
            progress(number, len(records))
    if cache is not None and new:
        names = list(cached)
        sizes = np.cumsum([0] + [len(cached[n]) for n in names])
        np.savez(cache, fingerprint=np.array(fingerprint), problems=np.array(names),
                 starts=sizes, features=np.concatenate([cached[n] for n in names]))
    if not features:
        raise ConfigError("no usable labelled steps: label problems with `ttscale prm label`")
    return StepTable(np.concatenate(features).astype(np.float32), np.array(soft, np.float32),
                     np.array(hard, bool), np.array(problems), np.array(last, bool))


def split_problems(problems: Sequence[str], validation: float, seed: int) -> set[str]:
    """The validation problems: a seeded share of them, whatever order they come in."""
    if not 0 < validation < 1:
        raise ConfigError(f"the validation share must be between 0 and 1, got {validation}")
    ordered = sorted(set(problems))
    rng = np.random.default_rng(seed)
    count = max(1, round(len(ordered) * validation))
    if count >= len(ordered):
        raise ConfigError(f"{len(ordered)} labelled problems cannot be split into training "
                          "and validation; label more")
    return {ordered[i] for i in rng.permutation(len(ordered))[:count]}


def metrics(head: ValueHead, table: StepTable) -> dict:
    """How well the head's scores rank and fit a split's labels."""
    logits = head.logits(table.features)
    scores = 1 / (1 + np.exp(-logits))
    inner = ~table.last
    return {
        "steps": len(table),
        "problems": len(set(table.problem.tolist())),
        "auroc_hard": auroc(scores, table.hard),
        "auroc_soft_at_half": auroc(scores, table.soft >= 0.5),
        "auroc_hard_inner_steps": auroc(scores[inner], table.hard[inner]),
        "auroc_last_step_correct": auroc(scores[table.last], table.hard[table.last]),
        "bce": bce(logits, table.soft),
        "bce_of_the_mean": bce(np.full(len(table), _logit(float(table.soft.mean()))),
                               table.soft),
        "positive_rate_hard": float(table.hard.mean()),
        "mean_soft_label": float(table.soft.mean()),
    }


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def read_label_folders(folders: Sequence[Path]) -> tuple[list[dict], list[dict]]:
    """The labelled problems of several labels folders, and each folder's provenance; a
    problem labelled in two folders is kept from the first and reported."""
    records: list[dict] = []
    sources: list[dict] = []
    seen: set[str] = set()
    for folder in folders:
        labelled = read_labels(folder)
        fresh = [r for r in labelled if str(r.get("key")) not in seen]
        if len(fresh) < len(labelled):
            logger.warning("%d problems of %s were labelled in an earlier folder too; the "
                           "earlier labels are used", len(labelled) - len(fresh), folder)
        seen.update(str(r.get("key")) for r in fresh)
        records.extend(fresh)
        manifest = read_label_manifest(folder / LABELS_MANIFEST) if folder.is_dir() else {}
        sources.append({"labels": str(folder), "dataset": manifest.get("dataset"),
                        "max_reference_steps": manifest.get("max_reference_steps"),
                        "settings": manifest.get("settings"),
                        "method": manifest.get("label_method", "monte-carlo rollouts"),
                        "policy": manifest.get("policy"), "problems": len(fresh),
                        "problems_with_labelled_steps": sum(bool(r.get("solutions"))
                                                            for r in fresh)})
    return records, sources


def train_value_head(labels: Path | Sequence[Path], out_dir: Path, *, name: str,
                     model_path: str | None = None, validation: float = 0.2,
                     label: str = "soft", settings: FitSettings | None = None,
                     n_threads: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Train a head on the labels in ``labels`` (one folder or several) and write it to
    ``out_dir``; returns its manifest."""
    from ttscale.engines.llama_hidden import LlamaHiddenStates

    settings = settings or FitSettings()
    if label not in LABEL_KINDS:
        raise ConfigError(f"unknown label kind {label!r}; use soft or hard")
    records, sources = read_label_folders([labels] if isinstance(labels, Path) else labels)
    reader = LlamaHiddenStates(model_path, n_threads=n_threads)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        table = step_table(records, reader, out_dir / FEATURES_FILE, progress)
        held_out = split_problems(table.problem.tolist(), validation, settings.seed)
        train_ids = set(table.problem.tolist()) - held_out
        train, valid = table.rows(train_ids), table.rows(held_out)
        target = train.soft if label == "soft" else train.hard.astype(np.float32)
        target_valid = valid.soft if label == "soft" else valid.hard.astype(np.float32)
        started = time.monotonic()
        head, history = fit(train.features, target, valid.features, target_valid, settings)
        head.save(out_dir)
        np.savez_compressed(out_dir / "validation.npz", problem=valid.problem,
                            score=head.predict(valid.features), soft=valid.soft,
                            hard=valid.hard, last=valid.last)
        manifest = {
            "name": name,
            "format": "value head (Skywork-style): problem + newline, then each stripped "
                      "step + newline; the base model's final hidden state at each newline",
            "step_token": STEP_TOKEN,
            "base_model": {
                "name": reader.name, "file": reader.path.name, "embedded": reader.embedded,
                **({} if reader.embedded else {"path": str(reader.path)}),
                "fingerprint": gguf_fingerprint(reader.path),
                "parameters": int(reader.parameters), "hidden_size": reader.n_embd,
                "features": "llama.cpp embeddings mode, no pooling",
            },
            "label_method": {"kind": label,
                             "methods": sorted({str(s["method"]) for s in sources})},
            "data": {"sources": sources,
                     "training_problems": sorted(train_ids),
                     "validation_problems": sorted(held_out)},
            "head": {"hidden": settings.hidden, "fit": asdict(settings),
                     "best_epoch": history.best_epoch, "epochs_run": len(history.train_loss),
                     "seconds": round(time.monotonic() - started, 2),
                     "sha256": _sha256(out_dir / "head.npz")},
            "training": metrics(head, train),
            "validation": metrics(head, valid),
            "created": time.strftime("%Y-%m-%d"),
            "ttscale": version("ttscale"),
        }
        write_json_atomic(out_dir / MANIFEST_FILE, manifest)
        return manifest
    finally:
        reader.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
