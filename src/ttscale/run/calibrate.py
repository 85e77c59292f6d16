"""A planner study: the calibration and evaluation halves of a problem set run through every
method × budget (resumable runs of the runner), the policy's pass@1 per problem from an
independent set of samples, and a calibrated plan built from the calibration half.

Folder layout under ``out``::

    plan.json              the plan
    runs/calibration/      methods × budgets on the calibration half
    runs/evaluation/       the same on the evaluation half (``ttscale plan evaluate``)
    runs/difficulty/       K samples per problem at another seed: pass@1 for the oracle bins
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ttscale import __version__
from ttscale.engines.base import Policy
from ttscale.errors import ConfigError
from ttscale.planner.difficulty import (
    PassRate,
    absolute_binning,
    parse_binning,
    pass_rates_from_records,
    quantile_binning,
)
from ttscale.planner.outcomes import ProblemOutcomes, collect_outcomes
from ttscale.planner.plan import DEFAULT_MIN_PROBLEMS, Plan, choose_cell
from ttscale.planner.probe import DEFAULT_PROBE_SIZE, fit_predictor
from ttscale.planner.split import split_ids
from ttscale.prompts import PromptFormat
from ttscale.records import RECORDS_FILE, read_records
from ttscale.rewards.base import Scorer
from ttscale.run.import_runs import import_records
from ttscale.run.runner import DatasetSelection, RunConfig, RunOutcome, fingerprint, run
from ttscale.search import METHODS
from ttscale.settings import SearchSettings

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
DIFFICULTY_SEED_OFFSET = 1  # pass@1 samples are drawn apart from every method's samples


@dataclass(frozen=True)
class StudyConfig:
    dataset: DatasetSelection
    methods: tuple[str, ...] = ("majority", "bon", "beam", "dvts")
    budgets: tuple[int, ...] = (4, 16, 64)
    method_budgets: tuple[tuple[str, tuple[int, ...]], ...] = ()  # per-method overrides
    scorer: str = "confidence"
    settings: SearchSettings = field(default_factory=SearchSettings)
    calibration_fraction: float = 0.5
    split_seed: int = 0
    probe_size: int = DEFAULT_PROBE_SIZE
    difficulty_samples: int = 16
    bins: str = "absolute"
    min_problems: int = DEFAULT_MIN_PROBLEMS
    # a reasoning policy's whole-solution methods measured again under each thinking budget:
    # options ``method+thinkB`` beside the unbudgeted ones
    thinking_budgets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        parse_binning(self.bins)
        choosers = [m for m in self.methods if m in METHODS and METHODS[m].chooses]
        if choosers:
            raise ConfigError(f"a calibration measures fixed methods; drop "
                              f"{', '.join(map(repr, choosers))} from --methods")
        if self.probe_size < 1 or self.difficulty_samples < 1 or self.min_problems < 1:
            raise ConfigError("--probe, --difficulty-samples and --min-problems must be at "
                              "least 1")
        if not any(METHODS[m].pooled for m in self.methods if m in METHODS):
            raise ConfigError("a calibration needs bon or majority among --methods: the probe "
                              "that predicts a problem's difficulty is their first samples")
        if any(b < 1 for b in self.thinking_budgets):
            raise ConfigError(f"thinking budgets are positive token counts, got "
                              f"{list(self.thinking_budgets)}")
        self.run_config()  # checks methods, budgets and widths
        for budget in self.thinking_budgets:
            self.run_config(thinking_budget=budget)  # and that each leaves room to answer

    def budgets_for(self, method: str) -> tuple[int, ...]:
        budgets = dict(self.method_budgets).get(method, self.budgets)
        if METHODS[method].pooled:  # the probe: the first samples of the pool, free to record
            budgets = (*budgets, self.probe_size)
        return tuple(sorted(set(budgets)))

    def run_config(self, ids: Sequence[str] | None = None,
                   thinking_budget: int | None = None) -> RunConfig:
        """Every method × budget; with ``thinking_budget``, the whole-solution methods (those
        answered from a pool of samples) again, their thoughts under it: tree searches grow
        step by step and take none."""
        unknown = [m for m, _ in self.method_budgets if m not in self.methods]
        if unknown:
            raise ConfigError(f"budgets were given for {', '.join(unknown)}, which is not "
                              "among --methods")
        methods, settings = self.methods, self.settings
        if thinking_budget is not None:
            methods = tuple(m for m in methods if METHODS[m].pooled)
            settings = replace(settings, thinking_budget=thinking_budget)
        selection = (DatasetSelection(self.dataset.name, ids=tuple(ids)) if ids is not None
                     else self.dataset)
        return RunConfig(dataset=selection, methods=methods,
                         budgets=tuple(sorted({n for m in methods for n in self.budgets_for(m)})),
                         method_budgets=tuple((m, self.budgets_for(m)) for m in methods),
                         scorer=self.scorer, settings=settings)

    def difficulty_config(self, ids: Sequence[str]) -> RunConfig:
        settings = replace(self.settings, seed=self.settings.seed + DIFFICULTY_SEED_OFFSET)
        return RunConfig(dataset=DatasetSelection(self.dataset.name, ids=tuple(ids)),
                         methods=("majority",),
                         budgets=(self.difficulty_samples,), scorer="none", settings=settings)

    def split(self) -> tuple[list[str], list[str]]:
        problems = self.dataset.load()
        return split_ids([p.id for p in problems], self.calibration_fraction, self.split_seed)

    def to_dict(self) -> dict:
        entry = {**asdict(self), "settings": self.settings.identity()}
        if not self.thinking_budgets:  # as studies before thinking budgets wrote it
            del entry["thinking_budgets"]
        return entry

    @classmethod
    def from_dict(cls, data: dict) -> StudyConfig:
        try:
            return cls(
                dataset=DatasetSelection(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in data["dataset"].items()}),
                methods=tuple(data["methods"]), budgets=tuple(data["budgets"]),
                method_budgets=tuple((m, tuple(b)) for m, b in data["method_budgets"]),
                scorer=data["scorer"],
                settings=SearchSettings(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in data["settings"].items()}),
                **{k: data[k] for k in ("calibration_fraction", "split_seed", "probe_size",
                                        "difficulty_samples", "bins", "min_problems")},
                # plans calibrated before thinking budgets have none
                thinking_budgets=tuple(data.get("thinking_budgets", ())))
        except (KeyError, TypeError) as error:
            raise ConfigError(f"the plan's study settings are malformed ({error!r})") from error


Progress = Callable[[str, int, int], None]


async def run_half(config: StudyConfig, half: str, ids: Sequence[str], policy: Policy,
                   scorer: Scorer | None, prompt: PromptFormat, out: Path,
                   progress: Progress | None = None, imports: Sequence[Path] = ()
                   ) -> tuple[RunOutcome, RunOutcome]:
    """Every method × budget on one half, then its pass@1 samples; both resumable. The
    records ``imports`` (run folders) already hold for this half are copied in first, and
    only what they lack is run."""
    def hook(label: str):
        return None if progress is None else (lambda done, total: progress(label, done, total))

    if config.thinking_budgets and prompt.thinking_format is None:  # before any run
        raise ConfigError("--thinking-budgets measures a policy that thinks: this prompt "
                          "expects no thought (use a reasoning model's chat template, or "
                          "--thinking on)")
    methods_config = config.run_config(ids)
    if imports:
        import_records(imports, half_folder(out, half),
                       fingerprint(methods_config, policy.info, prompt), ids,
                       methods_config.jobs())
    methods = await run(methods_config, policy, scorer, half_folder(out, half), prompt,
                        on_problem_done=hook(f"{half}: methods"))
    for budget in config.thinking_budgets:
        await run(config.run_config(ids, budget), policy, scorer,
                  _budgeted_folder(out, half, budget), prompt,
                  on_problem_done=hook(f"{half}: thinking budget {budget}"))
    difficulty = await run(config.difficulty_config(ids), policy, None,
                           difficulty_folder(out), prompt,
                           on_problem_done=hook(f"{half}: pass@1 samples"))
    return methods, difficulty


def half_folder(out: Path, half: str) -> Path:
    """The run of a half's methods (``calibration``, ``evaluation``) in study folder ``out``."""
    return out / "runs" / half


def difficulty_folder(out: Path) -> Path:
    """The run of the pass@1 samples that bin the problems of both halves."""
    return out / "runs" / "difficulty"


def _budgeted_folder(out: Path, half: str, thinking_budget: int) -> Path:
    """The run of a half's methods with thoughts cut at ``thinking_budget``, beside the half's."""
    return half_folder(out, half).with_name(f"{half}-think{thinking_budget}")


def read_half(out: Path, half: str, ids: Sequence[str], probe_size: int,
              thinking_budgets: Sequence[int] = ()
              ) -> tuple[dict[str, ProblemOutcomes], dict[str, PassRate]]:
    """The outcomes and pass@1 estimates of one half's problems, from its records on disk."""
    wanted = set(ids)
    folders = [half_folder(out, half)] + [_budgeted_folder(out, half, b) for b in thinking_budgets]
    records = [r for folder in folders for r in read_records(folder / RECORDS_FILE).records
               if r["problem_id"] in wanted]
    difficulty = [r for r in read_records(difficulty_folder(out) / RECORDS_FILE).records
                  if r["problem_id"] in wanted and r["method"] == "majority"]
    return collect_outcomes(records, probe_size), pass_rates_from_records(difficulty)


def build_plan(config: StudyConfig, outcomes: dict[str, ProblemOutcomes],
               pass_rates: dict[str, PassRate], *, policy: dict, width: int,
               info: dict | None = None) -> Plan:
    """The calibrated plan from the calibration half's outcomes and pass@1 estimates."""
    usable = sorted(pid for pid in outcomes
                    if pid in pass_rates and outcomes[pid].probe is not None)
    missing = sorted(set(outcomes) - set(usable))
    if missing:
        logger.warning("%d calibration problem(s) lack pass@1 samples or a probe and are left "
                       "out: %s", len(missing), ", ".join(missing[:5]))
    if not usable:
        raise ConfigError("no calibration problem has both its runs and its pass@1 samples; "
                          "run `ttscale plan calibrate` to the end")
    kind, count = parse_binning(config.bins)
    rates = [pass_rates[pid].value for pid in usable]
    binning = absolute_binning() if kind == "absolute" else quantile_binning(rates, count)
    bins = {pid: binning.assign(pass_rates[pid].value) for pid in usable}
    predictor, predictor_accuracy = fit_predictor(
        [outcomes[pid].probe for pid in usable], [bins[pid] for pid in usable],  # type: ignore[misc]
        binning.names)
    plan = Plan(source="calibrated", policy=policy, scorer=config.scorer, binning=binning,
                predictor=predictor, probe_size=config.probe_size, width=width,
                budgets=tuple(sorted(set(config.budgets))), dataset=config.dataset.name)
    for name in binning.names:
        members = [outcomes[pid] for pid in usable if bins[pid] == name]
        if len(members) < config.min_problems:
            plan.fallbacks[name] = (f"only {len(members)} calibration problem(s), fewer than "
                                    f"--min-problems {config.min_problems}")
        cells = {}
        for budget in plan.budgets:
            choice = choose_cell(members, budget, config.probe_size)
            if choice is not None:
                cells[budget] = choice
        plan.choices[name] = cells
        if not cells and name not in plan.fallbacks:
            plan.fallbacks[name] = "no method was measured on all its problems"
    plan.info = {
        **(info or {}),
        "study": config.to_dict(),
        "calibration_problems": usable,
        "bin_counts": {name: sum(b == name for b in bins.values()) for name in binning.names},
        "pass_at_1": {pid: _pass_at_1(pass_rates[pid], binning) for pid in usable},
        # problems whose 95 % interval reaches into another bin: more samples would settle it
        "bin_uncertain": sum(len(_bins_within(pass_rates[pid], binning)) > 1 for pid in usable),
        "predictor_accuracy_on_calibration": round(predictor_accuracy, 6),
        "ttscale": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return plan


def _bins_within(rate: PassRate, binning) -> set[str]:
    interval = rate.estimate
    return {binning.assign(interval.low), binning.assign(interval.high)}


def _pass_at_1(rate: PassRate, binning) -> dict:
    interval = rate.estimate
    return {"correct": rate.correct, "samples": rate.samples, "low": round(interval.low, 4),
            "high": round(interval.high, 4), "bin": binning.assign(rate.value)}


async def calibrate(config: StudyConfig, policy: Policy, scorer: Scorer | None,
                    prompt: PromptFormat, out: Path, progress: Progress | None = None,
                    invocation: dict | None = None, imports: Sequence[Path] = ()) -> Plan:
    """Run (or resume) the calibration half and write ``out/plan.json``. ``invocation``: how
    the policy and scorer were loaded, kept in the plan so that evaluation loads the same.
    ``imports``: run folders whose records of this study are taken instead of run again (kept
    in the plan, so that evaluation takes its half's from them too)."""
    calibration_ids, evaluation_ids = config.split()
    await run_half(config, "calibration", calibration_ids, policy, scorer, prompt, out,
                   progress, imports)
    outcomes, pass_rates = read_half(out, "calibration", calibration_ids, config.probe_size,
                                     config.thinking_budgets)
    plan = build_plan(config, outcomes, pass_rates,
                      policy={"name": policy.info.name, "parameters": policy.info.parameters},
                      width=config.settings.width,
                      info={"evaluation_problems": evaluation_ids,
                            "invocation": invocation or {},
                            **({"imports": [str(p) for p in imports]} if imports else {})})
    plan.save(out / PLAN_FILE)
    return plan
