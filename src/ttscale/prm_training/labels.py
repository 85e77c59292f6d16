"""Automatic step labels, the Math-Shepherd way (Wang et al., 2024): no human marks a step.

For each training problem the policy samples ``samples`` solutions. For every step of a
solution but the last, ``rollouts`` completions are sampled from the solution's prefix up to
and including that step, and each completion's final answer is graded against the reference:

* the soft label is the fraction of completions that reach the right answer (an estimate of
  the step's value: how likely the policy is to finish correctly from there);
* the hard label is whether any of them does.

The last step's label is the solution's own correctness. A rollout has the tokens its
solution had left (the sample's budget less what the steps before it took, at least
``MIN_ROLLOUT_TOKENS``), so a long solution's late steps cost little. Prefixes that several
solutions share are rolled out once. Every problem's calls go through the engine together
and problems run ``parallel`` at once, so the engine's batches stay full.

With ``screen`` > 0 a problem is screened first: ``screen`` solutions are sampled and graded,
and a problem none of them solves is recorded as screened out (no rollouts: every label would
be 0). Otherwise the solutions to label are taken from the screened ones, the correct first
(up to half of ``samples``) and then the wrong, so both kinds of steps are labelled. A weak
policy solves few training problems; screening spends the rollout budget where its labels
can tell steps apart.

Only training data may be labelled: the built-in test splits are refused, so a PRM trained
here never saw a problem it is evaluated on.

With ``method="exact"`` (``ttscale prm label --method exact``) no rollout is sampled: for
problems whose true intermediate quantities are recorded (the ladder's, ``--dataset
ladder_train``) each step of the ``samples`` solutions is labelled by
:func:`ttscale.prm_training.step_truth.step_labels`, 1 when it is right and 0 when it is
wrong (soft = hard).
A step with nothing to check (no number) is recorded with a ``null`` label and left out of
training; its text stays in the solution, so the steps after it are read in the context the
policy wrote. Problems without quantities are refused. Cheap: one sampling call per problem.

Records are appended to ``labels.jsonl`` one problem at a time (flushed and fsynced) with the
settings and the label method in ``manifest.json``; a rerun skips labelled problems and
refuses other settings."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ttscale.datasets import BUILTIN_DATASETS, TRAIN_ONLY, Problem, load_dataset
from ttscale.engines.base import Policy
from ttscale.errors import ConfigError
from ttscale.grading import extract_answer, grade
from ttscale.prm_training.step_truth import step_labels
from ttscale.prompts import PromptFormat
from ttscale.records import RecordWriter, read_records, write_json_atomic
from ttscale.run.scheduler import batch_across_calls, solve_concurrently
from ttscale.search.steps_from_text import split_continuation
from ttscale.settings import SearchSettings

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.jsonl"
MIN_ROLLOUT_TOKENS = 16
MANIFEST_FILE = "manifest.json"

MONTE_CARLO = "monte-carlo"
EXACT = "exact"
LABEL_METHODS = (MONTE_CARLO, EXACT)
"""``ttscale prm label --method``: Math-Shepherd rollouts (the default) or exact step truth."""
METHOD_DESCRIPTIONS = {
    MONTE_CARLO: "math-shepherd monte-carlo rollouts, each with the tokens its solution had "
                 "left",
    EXACT: "exact step labels from the ladder's recorded quantities",
}
"""The ``label_method`` a labels folder's manifest records (read by the head's card)."""


@dataclass(frozen=True)
class LabelSettings:
    samples: int = 4  # solutions sampled per problem
    rollouts: int = 4  # completions per step prefix
    temperature: float = SearchSettings.temperature
    top_p: float = SearchSettings.top_p
    max_solution_tokens: int = 256  # labelled solutions are short: rollouts cost per step
    seed: int = SearchSettings.seed
    screen: int = 0  # solutions sampled to screen a problem first; 0: no screening

    def __post_init__(self) -> None:
        for name in ("samples", "rollouts", "max_solution_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.screen and self.screen < self.samples:
            raise ConfigError(f"screening samples the solutions to label: --screen "
                              f"({self.screen}) must be 0 or at least --samples "
                              f"({self.samples})")
        if not 0 < self.temperature <= 2:
            raise ConfigError("labels need sampled rollouts: the temperature must be in "
                              f"(0, 2], got {self.temperature}")


@dataclass(frozen=True)
class LabelOutcome:
    labelled: int  # problems labelled by this call
    skipped: int  # already labelled before it
    failures: list[tuple[str, str]]  # (problem id, error)
    out_dir: Path


def check_training_split(dataset: str) -> None:
    """Refuse the built-in test sets: labels are training data."""
    if dataset in BUILTIN_DATASETS and dataset not in TRAIN_ONLY:
        raise ConfigError(f"{dataset} is a test set: PRM labels come from training data only, "
                          f"so that evaluation problems stay unseen; use "
                          f"{' or '.join(sorted(TRAIN_ONLY))} or a JSONL file of your own")


def check_label_method(method: str, dataset: str,
                       problems: tuple[Problem, ...] | None = None) -> None:
    """Refuse an unknown method, and for exact labels a dataset (or selection of
    ``problems``) without recorded quantities."""
    if method not in LABEL_METHODS:
        raise ConfigError(f"unknown label method {method!r}; use {' or '.join(LABEL_METHODS)}")
    if method != EXACT:
        return
    if problems is None:
        problems = load_dataset(dataset).problems
    missing = [p.id for p in problems if not p.quantities]
    if missing:
        which = (f"the problems of {dataset} have none" if len(missing) == len(problems) else
                 f"{len(missing)} of the {len(problems)} selected problems of {dataset} have "
                 "none")
        raise ConfigError(
            f"exact step labels need each problem's recorded intermediate quantities, and "
            f"{which} (e.g. {missing[0]!r}); use --dataset ladder_train, or --method "
            f"{MONTE_CARLO}")


def _exact_label(right: bool | None) -> dict | None:
    return None if right is None else {"soft": float(right), "hard": right}


async def label_problem_exact(problem: Problem, policy: Policy, prompt: PromptFormat,
                              settings: LabelSettings) -> dict:
    """One problem's record with exact labels: ``samples`` solutions, each step labelled by
    :func:`ttscale.prm_training.step_truth.step_labels` (None: nothing to check); no rollouts."""
    search = prompt.apply(SearchSettings())
    [samples] = await policy.extend([prompt.render(problem.problem)], settings.samples,
                                    list(search.end_stops), settings.max_solution_tokens,
                                    settings.temperature, settings.top_p, settings.seed)
    records = []
    for sample in samples:
        steps = [step.text for step in split_continuation(sample, search.delimiter)]
        final = extract_answer(steps[-1]) if steps else None
        correct = grade(final, problem.answer)
        truth = step_labels(problem, steps)
        records.append({"steps": steps, "answer": final, "correct": correct,
                        "genuine": correct and not any(t is False for t in truth),
                        "labels": [_exact_label(t) for t in truth]})
    return {"key": problem.id, "problem_id": problem.id, "problem": problem.problem,
            "reference": problem.answer, "quantities": list(problem.quantities),
            "solutions": records, "generated_tokens": sum(c.generated_tokens for c in samples),
            "rolled_prefixes": 0}


async def label_problem(problem: Problem, policy: Policy, prompt: PromptFormat,
                        settings: LabelSettings) -> dict:
    """One problem's record: its sampled solutions, each step with its labels."""
    search = prompt.apply(SearchSettings())
    delimiter, stops = search.delimiter, list(search.end_stops)
    root = prompt.render(problem.problem)
    [samples] = await policy.extend([root], settings.screen or settings.samples, stops,
                                    settings.max_solution_tokens, settings.temperature,
                                    settings.top_p, settings.seed)
    sampled_tokens = sum(c.generated_tokens for c in samples)
    screened = None
    if settings.screen:
        solved = [grade(extract_answer(c.text), problem.answer) for c in samples]
        screened = {"samples": len(samples), "correct": sum(solved)}
        if not any(solved):
            return {"key": problem.id, "problem_id": problem.id, "problem": problem.problem,
                    "reference": problem.answer, "solutions": [], "screen": screened,
                    "generated_tokens": sampled_tokens, "rolled_prefixes": 0}
        samples = _mixed(samples, solved, settings.samples)
    split = [split_continuation(c, delimiter) for c in samples]
    solutions = [[step.text for step in steps] for steps in split]
    # every step prefix but the whole solution, each once (samples often share first steps),
    # with the tokens its solution has left: a rollout finishes the solution within the same
    # budget as the sample it continues
    room: dict[str, int] = {}
    for steps in split:
        for end in range(1, len(steps)):
            prefix = root + delimiter.join(s.text for s in steps[:end]) + delimiter
            left = settings.max_solution_tokens - sum(s.generated_tokens for s in steps[:end])
            room[prefix] = max(MIN_ROLLOUT_TOKENS, min(room.get(prefix, left), left))
    by_room: dict[int, list[str]] = {}
    for prefix, tokens in room.items():
        by_room.setdefault(tokens, []).append(prefix)
    groups = list(by_room.items())
    # issued in one turn of the event loop: the engine batches them together
    answers = await asyncio.gather(*(
        policy.extend(prefixes, settings.rollouts, stops, tokens, settings.temperature,
                      settings.top_p, settings.seed) for tokens, prefixes in groups))
    rolled_of = {prefix: outs for (_, prefixes), group in zip(groups, answers, strict=True)
                 for prefix, outs in zip(prefixes, group, strict=True)}
    correct_of = {prefix: sum(grade(extract_answer(c.text), problem.answer) for c in outs)
                  for prefix, outs in rolled_of.items()}
    records = []
    for steps in solutions:
        final = extract_answer(steps[-1]) if steps else None
        final_correct = grade(final, problem.answer)
        labels = []
        for end in range(1, len(steps)):
            correct = correct_of[root + delimiter.join(steps[:end]) + delimiter]
            labels.append(_label(correct, settings.rollouts))
        if steps:
            labels.append(_label(int(final_correct), 0))
        records.append({"steps": steps, "answer": final, "correct": final_correct,
                        "labels": labels})
    tokens = sampled_tokens + sum(c.generated_tokens for outs in rolled_of.values()
                                  for c in outs)
    return {"key": problem.id, "problem_id": problem.id, "problem": problem.problem,
            "reference": problem.answer, "solutions": records, "generated_tokens": tokens,
            "rolled_prefixes": len(room), **({"screen": screened} if screened else {})}


def _mixed(samples: list, solved: list[bool], count: int) -> list:
    """``count`` of the screened samples: the correct ones first, up to half, then the wrong
    ones, then more correct ones if the wrong run out; sampling order kept within each."""
    right = [c for c, ok in zip(samples, solved, strict=True) if ok]
    wrong = [c for c, ok in zip(samples, solved, strict=True) if not ok]
    take_right = min(len(right), max(1, count // 2))
    chosen = right[:take_right] + wrong[:count - take_right]
    return chosen + right[take_right:take_right + count - len(chosen)]


def _label(correct: int, rollouts: int) -> dict:
    """Soft and hard labels from ``correct`` of ``rollouts`` completions; rollouts 0 marks
    a last step, labelled by the solution's own answer."""
    soft = correct / rollouts if rollouts else float(correct)
    return {"soft": soft, "hard": correct > 0, "correct": correct, "rollouts": rollouts}


def reference_steps(problem: Problem) -> int | None:
    """Steps of a problem's reference solution (its non-empty lines before GSM8K's final
    ``####`` line); None without one."""
    if not problem.solution:
        return None
    return sum(1 for line in problem.solution.splitlines()
               if line.strip() and not line.startswith("####"))


def label_dataset(policy: Policy, prompt: PromptFormat, out_dir: Path, *, dataset: str,
                  limit: int | None = None, offset: int = 0,
                  max_reference_steps: int | None = None,
                  settings: LabelSettings = LabelSettings(), parallel: int = 4,
                  progress: Callable[[int, int], None] | None = None,
                  method: str = MONTE_CARLO) -> LabelOutcome:
    """Label a training set's problems into ``out_dir`` with ``method`` (see
    :data:`LABEL_METHODS`), resuming what is there."""
    check_training_split(dataset)
    if method not in LABEL_METHODS:
        check_label_method(method, dataset)  # raises
    if method == EXACT and settings.screen:
        raise ConfigError("--screen spends Monte-Carlo rollouts where labels can tell steps "
                          "apart; exact labels need none: drop --screen with --method exact")
    problems = load_dataset(dataset).problems
    if max_reference_steps is not None:
        # a weak policy learns values only where it sometimes succeeds: short problems
        problems = tuple(p for p in problems
                         if (reference_steps(p) or max_reference_steps + 1)
                         <= max_reference_steps)
        if not problems:
            raise ConfigError(f"no problem of {dataset} has a reference solution of at most "
                              f"{max_reference_steps} steps")
    problems = problems[offset:offset + limit if limit is not None else None]
    if not problems:
        raise ConfigError(f"--offset {offset} is past the last of the selected problems")
    check_label_method(method, dataset, problems)
    settings_identity = asdict(settings)
    if not settings.screen:  # folders labelled before screening existed resume as they were
        del settings_identity["screen"]
    if method == EXACT:  # no rollouts
        del settings_identity["rollouts"]
    identity = {"dataset": dataset, "max_reference_steps": max_reference_steps,
                "settings": settings_identity,
                "prompt": prompt.kind, "policy": {"name": policy.info.name,
                                                  "parameters": policy.info.parameters,
                                                  **{k: v for k, v in
                                                     policy.info.extra.items()
                                                     if k != "path"}},
                "label_method": METHOD_DESCRIPTIONS[method]}
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir / MANIFEST_FILE, identity)
    write_json_atomic(out_dir / MANIFEST_FILE, identity)
    done = {r["key"] for r in read_records(out_dir / LABELS_FILE).records}
    todo = [p for p in problems if p.id not in done]
    failures: list[tuple[str, str]] = []
    batched = batch_across_calls(policy)
    label_one = label_problem_exact if method == EXACT else label_problem

    async def run_all() -> int:
        finished = 0
        with RecordWriter(out_dir / LABELS_FILE) as writer:
            async for outcome in solve_concurrently(
                    todo, lambda p: label_one(p, batched, prompt, settings), parallel):
                if outcome.error is not None:
                    failures.append((outcome.item.id, str(outcome.error)))
                    logger.error("problem %s not labelled: %s", outcome.item.id,
                                 outcome.error)
                    continue
                writer.write(outcome.result)
                finished += 1
                if progress is not None:
                    progress(len(done) + finished, len(problems))
        return finished

    labelled = asyncio.run(run_all()) if todo else 0
    return LabelOutcome(labelled, len(problems) - len(todo), failures, out_dir)


def read_label_manifest(path: Path) -> dict:
    """A labels folder's manifest ({} when there is none); an unreadable one is an error."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}); move it away to start over") from exc


def _check_manifest(path: Path, identity: dict) -> None:
    existing = read_label_manifest(path)
    if not existing:
        return
    identity = json.loads(json.dumps(identity))
    changed = sorted(k for k in identity if existing.get(k) != identity[k])
    if changed:
        raise ConfigError(f"{path.parent} holds labels made with other {', '.join(changed)}; "
                          "label into another --out folder, or use the same settings")


def read_labels(path: Path) -> list[dict]:
    """The labelled problems of a labels folder (or file); bad lines reported and skipped."""
    path = path / LABELS_FILE if path.is_dir() else path
    if not path.exists():
        raise ConfigError(f"no labels at {path}: run `ttscale prm label` first")
    return read_records(path).records
