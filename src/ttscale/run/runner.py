"""``ttscale run``: dataset × methods × budgets, one record per (problem, method, budget).

Problems run ``parallel`` at a time through the scheduler, so their engine calls batch
together; a problem whose search fails is reported and the others go on.

Resumable: a problem's records are appended and fsynced as soon as it completes; a rerun of
the same command skips every finished record. Best-of-N and majority vote are answered from
one pool of N samples per problem, which also answers every smaller budget without new
generations (the engine draws sample ``j`` of a prefix from a stream fixed by the seed, the
prefix and ``j``, so the first k of N samples are exactly a run with budget k)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ttscale import __version__
from ttscale.compute import Ledger, TokenCount
from ttscale.datasets import TRAIN_ONLY, Problem, load_dataset
from ttscale.engines.base import CacheClearing, ModelInfo, Policy
from ttscale.errors import ConfigError, RunStateError
from ttscale.planner.auto import PlanChooser, plan_notices
from ttscale.planner.plan import Plan, prior_plan
from ttscale.prompts import PromptFormat
from ttscale.records import (
    FAILURES_FILE,
    MANIFEST_FILE,
    RECORDS_FILE,
    RecordWriter,
    RunFolderLock,
    read_records,
    write_json_atomic,
)
from ttscale.rewards.base import Scorer
from ttscale.run.evaluation import build_record, record_key
from ttscale.run.scheduler import batch_across_calls, batch_scorer_across_calls, solve_concurrently
from ttscale.search import SearchContext, get_method
from ttscale.search import solve_jobs as search_jobs
from ttscale.settings import SearchSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSelection:
    name: str = "gsm8k"
    ids: tuple[str, ...] | None = None
    levels: tuple[int, ...] | None = None
    limit: int | None = None
    offset: int = 0
    shuffle_seed: int | None = None

    def load(self) -> Sequence[Problem]:
        dataset = load_dataset(self.name, ids=self.ids, levels=self.levels, limit=self.limit,
                               seed=self.shuffle_seed, offset=self.offset)
        if self.name in TRAIN_ONLY:
            logger.warning("%s is a training split: use it for calibration or training, not "
                           "to report results", self.name)
        for row in dataset.skipped:
            logger.warning("dataset %s line %d skipped: %s", self.name, row.line, row.reason)
        return dataset.problems


@dataclass(frozen=True)
class RunConfig:
    dataset: DatasetSelection = field(default_factory=DatasetSelection)
    methods: tuple[str, ...] = ("bon",)
    budgets: tuple[int, ...] = (4,)
    scorer: str = "confidence"
    settings: SearchSettings = field(default_factory=SearchSettings)
    # budgets of particular methods, in place of ``budgets`` (e.g. tree searches at fewer)
    method_budgets: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("give at least one method (--method), e.g. --method bon,beam")
        for method, budgets in ((None, self.budgets), *self.method_budgets):
            if not budgets or any(n < 1 for n in budgets):
                raise ConfigError(f"budgets{f' of {method}' if method else ''} must be "
                                  f"positive integers, got {list(budgets)}")
        for method, _ in self.method_budgets:
            if method not in self.methods:
                raise ConfigError(f"budgets were given for {method}, which is not among the "
                                  f"methods {', '.join(self.methods)}")
        for name in self.methods:
            spec = get_method(name)
            if spec.chooses:
                if self.scorer == "none":
                    raise ConfigError(f"method {name} chooses among scored searches; give a "
                                      "scorer (--prm) instead of none")
                continue
            for n in self.budgets_of(name):
                spec.check_budget(n, self.settings.width)
            if spec.uses_scorer and self.scorer == "none":
                raise ConfigError(f"method {name} needs a scorer; drop --prm none or use "
                                  "--method majority")

    def budgets_of(self, method: str) -> tuple[int, ...]:
        return dict(self.method_budgets).get(method, self.budgets)

    def jobs(self) -> list[tuple[str, int]]:
        """(method, budget) pairs; a method of fixed budget (greedy) once, at that budget."""
        jobs: list[tuple[str, int]] = []
        for method in self.methods:
            fixed = get_method(method).fixed_budget
            budgets = (fixed,) if fixed else sorted(set(self.budgets_of(method)))
            jobs += [(method, n) for n in budgets]
        return jobs


def fingerprint(config: RunConfig, info: ModelInfo, prompt: PromptFormat,
                plan: Plan | None = None) -> dict:
    """What must not change between a run and its resumption: a record made under other
    settings would silently mix into the results."""
    identity = {
        "dataset": config.dataset.name,
        "scorer": config.scorer,
        "settings": config.settings.identity(),
        "prompt": {"kind": prompt.kind,
                   "template_sha256": hashlib.sha256(prompt.text.encode()).hexdigest()},
        "policy": {"name": info.name, "parameters": info.parameters,
                   **{k: v for k, v in info.extra.items() if k != "path"}},
    }
    if prompt.thinking != "auto":  # runs before the thinking modes keep their identity
        identity["prompt"]["thinking"] = prompt.thinking
    if plan is not None and _chooses(config):
        identity["plan"] = plan.identity  # auto records depend on the plan
    return json.loads(json.dumps(identity))  # as it reads back from the manifest

def differing_fields(previous: dict, identity: dict) -> list[str]:
    """The identity entries (settings by name) in which two runs differ."""
    names = []
    for key in sorted(set(previous) | set(identity)):
        if key == "settings":
            a, b = previous.get(key) or {}, identity.get(key) or {}
            names += [f"settings.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif previous.get(key) != identity.get(key):
            names.append(key)
    return names


def check_manifest(run_dir: Path, identity: dict) -> dict:
    """The manifest already in ``run_dir`` (empty if none), checked against ``identity``."""
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        previous = manifest.get("identity")
    except (OSError, ValueError) as error:
        raise RunStateError(f"{path} is unreadable ({error}); move the folder away or use "
                            "another --out") from error
    if previous != identity:
        differing = differing_fields(previous if isinstance(previous, dict) else {}, identity)
        raise RunStateError(
            f"{run_dir} holds a run with other settings (differs in: {', '.join(differing)}); "
            "resume it with its own settings, or use another --out folder")
    return manifest


# problems searched at once: enough that their samples fill an engine's batch between one
# search's rounds, few enough that their trees keep the KV cache (which every decoded row
# attends over) short; raise it for a GPU server
DEFAULT_PARALLEL = 4


@dataclass(frozen=True)
class ProblemFailure:
    problem_id: str
    message: str


@dataclass
class RunOutcome:
    run_dir: Path
    records: list[dict]
    new_records: int
    skipped_bad_lines: int
    policy_generated_tokens: int
    seconds: float
    failures: list[ProblemFailure] = field(default_factory=list)
    # every token the policy and the scorer ran (prompts not served from cache included):
    # the work behind the seconds, of which generation is a part
    computed_tokens: int = 0


ProgressHook = Callable[[int, int], None]


@dataclass
class OpenedRun:
    """A run folder made ready: its manifest written, its finished records read, and the
    (problem, jobs) pairs still to do."""

    run_dir: Path
    problems: Sequence[Problem]
    settings: SearchSettings
    plan: Plan | None
    todo: list[tuple[Problem, list[tuple[str, int]]]]
    records: list[dict]
    skipped_bad_lines: int


def open_run(config: RunConfig, info: ModelInfo, run_dir: Path, prompt: PromptFormat,
             plan: Plan | None = None) -> OpenedRun:
    """Check ``run_dir`` against this run's settings (a resumed run must match), write its
    manifest and list what is left. Shared by local and distributed runs, so both write the
    same folder."""
    problems = config.dataset.load()
    settings = prompt.apply(config.settings)
    for method in [m for m in config.methods if get_method(m).chooses]:
        plan = plan or prior_plan(info.parameters, info.name, config.scorer, settings.width)
        for notice in plan_notices(plan, config.budgets_of(method), info.name, info.parameters,
                                   config.scorer, config.settings):
            logger.warning("method %s: %s", method, notice)
    identity = fingerprint(config, info, prompt, plan)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = check_manifest(run_dir, identity)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(run_dir / MANIFEST_FILE, {
        "identity": identity,
        "methods": list(config.methods),
        "budgets": list(config.budgets),
        "dataset_selection": asdict(config.dataset),
        "problems": len(problems),
        "versions": _versions(),
        "model": asdict(info),
        "created": previous.get("created", now),
        "last_started": now,
    })
    existing = read_records(run_dir / RECORDS_FILE)
    done = {r["key"] for r in existing.records}
    todo = [(problem, [(m, n) for m, n in config.jobs()
                       if record_key(problem.id, m, n) not in done]) for problem in problems]
    return OpenedRun(run_dir, problems, settings, plan, todo, list(existing.records),
                     len(existing.bad_lines))


class RunTally:
    """Writes each finished problem's records (appended and fsynced at once) and counts what
    the run did. A record whose key is already written is dropped: a problem redone after a
    worker died must not appear twice."""

    def __init__(self, opened: OpenedRun, writer: RecordWriter) -> None:
        self.opened, self.writer = opened, writer
        self.done = {r["key"] for r in opened.records}
        self.new = self.generated = self.computed = self.finished = 0
        self.failures: list[ProblemFailure] = []
        self.started = time.perf_counter()

    def add(self, problem: Problem, records: Sequence[dict] | None,
            error: BaseException | None) -> None:
        if error is not None:
            message = f"{type(error).__name__}: {error}"
            logger.error("problem %s failed (%s); its records were not written (see %s): "
                         "rerun the same command to try it again", problem.id, message,
                         FAILURES_FILE)
            self.failures.append(ProblemFailure(problem.id, message))
            with RecordWriter(self.opened.run_dir / FAILURES_FILE) as failures:
                failures.write({"problem_id": problem.id, "error": message,
                                "time": datetime.now(UTC).isoformat(timespec="seconds")})
        written = []
        for record in records or ():
            if record["key"] in self.done:
                logger.warning("record %s came back twice; the second is dropped",
                               record["key"])
                continue
            self.writer.write(record)
            self.opened.records.append(record)
            self.done.add(record["key"])
            self.new += 1
            written.append(record)
        self._count_spend(written)
        self.finished += 1

    def _count_spend(self, records: Sequence[dict]) -> None:
        """What one problem's new records ran: each search's own, and a shared pool once (the
        most any record answered from it read: its samples and their scoring)."""
        pooled: dict[str, list[int]] = {"generated": [0], "policy": [0], "scorer": [0]}
        for record in records:
            ledger = record["ledger"]
            policy = TokenCount.from_dict(ledger["policy_tokens"])
            scorer = (TokenCount.from_dict(ledger["scorer_tokens"])
                      if ledger.get("scorer_tokens") else TokenCount())
            if record.get("pool_size") is None:
                self.generated += policy.generated
                self.computed += policy.computed + scorer.computed
            else:
                pooled["generated"].append(policy.generated)
                pooled["policy"].append(policy.computed)
                pooled["scorer"].append(scorer.computed)
        self.generated += max(pooled["generated"])
        self.computed += max(pooled["policy"]) + max(pooled["scorer"])

    def outcome(self) -> RunOutcome:
        return RunOutcome(self.opened.run_dir, self.opened.records, self.new,
                          self.opened.skipped_bad_lines, self.generated,
                          time.perf_counter() - self.started, self.failures, self.computed)


async def run(
    config: RunConfig,
    policy: Policy,
    scorer: Scorer | None,
    run_dir: Path,
    prompt: PromptFormat,
    on_problem_done: ProgressHook | None = None,
    plan: Plan | None = None,
    parallel: int = DEFAULT_PARALLEL,
) -> RunOutcome:
    """``plan`` is what ``auto`` jobs follow (default: the prior rules for this policy);
    ``parallel`` how many problems are searched at once (1: one after another, each from an
    empty prefix cache, which makes records reproducible bit for bit; with more, problems
    share the cache and a batch, and records are reproducible up to floating-point rounding:
    where cached tokens sit in the KV cache depends on timing, and the attention sums them in
    that order)."""
    with RunFolderLock(run_dir):  # one writer per run folder
        opened = open_run(config, policy.info, run_dir, prompt, plan)
        solve = problem_solver(config, policy, scorer, opened.settings, prompt, opened.plan,
                               parallel)
        with RecordWriter(run_dir / RECORDS_FILE) as writer:
            tally = RunTally(opened, writer)
            async for outcome in solve_concurrently(opened.todo, solve, parallel):
                tally.add(outcome.item[0], outcome.result, outcome.error)
                if on_problem_done:
                    on_problem_done(tally.finished, len(opened.problems))
        return tally.outcome()


def problem_solver(config: RunConfig, policy: Policy, scorer: Scorer | None,
                   settings: SearchSettings, prompt: PromptFormat, plan: Plan | None,
                   parallel: int):
    """The coroutine function that solves one (problem, jobs) item, its engine calls batched
    with those of the other problems in flight (``parallel`` at most)."""
    batched_policy = batch_across_calls(policy)
    batched_scorer = batch_scorer_across_calls(scorer)

    async def solve(item: tuple[Problem, Sequence[tuple[str, int]]]) -> list[dict]:
        problem, jobs = item
        if parallel == 1 and jobs and isinstance(policy, CacheClearing):
            # one at a time, each problem starts from an empty cache: its records are then
            # the same bit for bit in a resumed run as in an uninterrupted one
            policy.clear_cache()
        return await solve_jobs(problem, jobs, batched_policy, batched_scorer, config.scorer,
                                settings, prompt, plan)

    return solve


async def solve_jobs(
    problem: Problem,
    jobs: Sequence[tuple[str, int]],
    policy: Policy,
    scorer: Scorer | None,
    scorer_name: str,
    settings: SearchSettings,
    prompt: PromptFormat,
    plan: Plan | None = None,
) -> list[dict]:
    """Every record one problem still needs."""
    ctx = SearchContext(
        problem=problem.problem, prompt=prompt.render(problem.problem), policy=policy,
        scorer=scorer, settings=settings, ledger=Ledger(policy.info.parameters, None),
        chooser=PlanChooser(plan, scorer_name, problem.dataset) if plan is not None else None,
        thinking=prompt.thinking_format)
    records = []
    for job in await search_jobs(ctx, jobs):
        spec, result = get_method(job.method), job.result
        record = build_record(
            problem=problem, method=job.method, n=job.n, width=result.width,
            scorer_name=scorer_name if spec.uses_scorer else None, settings=settings,
            candidates=result.candidates, tree=result.tree, ledger=result.ledger,
            seconds=job.seconds, pooled=job.pool_size is not None, pool_size=job.pool_size)
        if result.details is not None:
            record[result.details.record_key] = result.details.to_dict()
        records.append(record)
    return records


def _chooses(config: RunConfig) -> bool:
    return any(get_method(m).chooses for m in config.methods)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"ttscale": __version__}
    for package in ("llama-cpp-python", "math-verify", "openai", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def run_sync(*args, **kwargs) -> RunOutcome:
    return asyncio.run(run(*args, **kwargs))
