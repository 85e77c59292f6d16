"""A plan: for (policy, scorer, difficulty bin, budget) the method and settings to use.

A calibrated plan is measured (``ttscale plan calibrate``): in each bin and at each budget, of
every method and budget ``n`` whose paths fit the budget (the probe's included), the most
accurate one, the cheaper in FLOPs on a tie, with the accuracy, its bootstrap interval and the
FLOPs behind the choice. The prior plan is the paper's rules (:mod:`ttscale.planner.prior`);
a calibrated plan falls back to it, and says so, wherever it cannot decide."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ttscale.errors import ConfigError
from ttscale.planner.difficulty import Binning, absolute_binning
from ttscale.planner.options import option_label, split_option
from ttscale.planner.outcomes import ProblemOutcomes
from ttscale.planner.prior import RULES, prior_method
from ttscale.planner.probe import DEFAULT_PROBE_SIZE, Predictor, prior_predictor
from ttscale.search import METHODS
from ttscale.stats import bootstrap_mean

logger = logging.getLogger(__name__)

PLAN_FORMAT = "ttscale-plan"
PLAN_VERSION = 1
DEFAULT_MIN_PROBLEMS = 5


@dataclass(frozen=True)
class Candidate:
    method: str
    n: int
    accuracy: float
    low: float
    high: float
    flops: float | None  # mean per problem, the probe included

    def to_dict(self) -> dict:
        return {"method": self.method, "n": self.n, "accuracy": round(self.accuracy, 6),
                "low": round(self.low, 6), "high": round(self.high, 6), "flops": self.flops}


@dataclass(frozen=True)
class Choice:
    """One cell of a calibrated plan. ``candidates`` is every option measured, best first."""

    method: str
    n: int
    problems: int
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict:
        return {"method": self.method, "n": self.n, "problems": self.problems,
                "candidates": [c.to_dict() for c in self.candidates]}

    @classmethod
    def from_dict(cls, data: Mapping) -> Choice:
        return cls(str(data["method"]), int(data["n"]), int(data["problems"]),
                   tuple(Candidate(str(c["method"]), int(c["n"]), float(c["accuracy"]),
                                   float(c["low"]), float(c["high"]),
                                   None if c["flops"] is None else float(c["flops"]))
                         for c in data["candidates"]))


@dataclass(frozen=True)
class Decision:
    """What the planner chose for one problem, and why."""

    method: str
    n: int
    width: int | None
    source: str  # "plan" or "prior"
    reason: str
    notes: tuple[str, ...] = ()
    thinking_budget: int | None = None  # whole solutions think under this budget

    @property
    def option(self) -> str:
        """The option's label, as calibration outcomes name it."""
        return option_label(self.method, self.thinking_budget)

    def to_dict(self) -> dict:
        entry = {"method": self.method, "n": self.n, "width": self.width,
                 "source": self.source, "reason": self.reason, "notes": list(self.notes)}
        if self.thinking_budget is not None:
            entry["thinking_budget"] = self.thinking_budget
        return entry


def fit_budget(method: str, budget: int, width: int) -> tuple[str, int]:
    """The prior's method at a budget: tree searches need a multiple of the width M, and
    fall back to Best-of-N below M."""
    if METHODS[method].uses_width:
        n = budget - budget % width
        if n < width:
            return "bon", budget
        return method, n
    return method, budget


@dataclass
class Plan:
    source: str  # "calibrated" or "prior"
    policy: dict  # name and parameters of the policy the plan was made for
    scorer: str | None
    binning: Binning
    predictor: Predictor
    probe_size: int
    width: int
    budgets: tuple[int, ...] = ()
    choices: dict[str, dict[int, Choice]] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)  # bin -> why the prior decides
    dataset: str | None = None
    info: dict = field(default_factory=dict)  # calibration details, settings, versions
    digest: str | None = None  # sha256 of the file it was read from

    @property
    def identity(self) -> str:
        """What a run's records depend on: the file's digest, or the prior's inputs."""
        if self.digest:
            return f"sha256:{self.digest}"
        return f"prior:{self.policy.get('parameters')}:{self.probe_size}:{self.width}"

    # -- use -----------------------------------------------------------------------------
    def decide(self, difficulty: str, budget: int, *, parameters: int | None,
               model_name: str = "", dataset: str | None = None,
               notes: Sequence[str] = (), thinks: bool = False) -> Decision:
        notes = list(notes)
        if self.source == "calibrated":
            calibrated = self._calibrated_budget(difficulty, budget, notes)
            if calibrated is not None:
                choice = self.choices[difficulty][calibrated]
                best = choice.candidates[0]
                reason = (f"calibrated plan, bin {difficulty}, budget {calibrated}: "
                          f"{choice.method}@{choice.n} had the best accuracy "
                          f"{best.accuracy:.1%} [{best.low:.1%}, {best.high:.1%}] on "
                          f"{choice.problems} calibration problems")
                method, thinking_budget = split_option(choice.method)
                width = self.width if METHODS[method].uses_width else None
                return Decision(method, choice.n, width, "plan", reason, tuple(notes),
                                thinking_budget)
        prior_bin = difficulty if difficulty in ("easy", "medium", "hard") else (
            _as_absolute(difficulty, self.binning))  # quantile levels, by rank
        method, rule = prior_method(parameters, prior_bin, model_name=model_name,
                                    dataset=dataset or self.dataset, thinks=thinks)
        fitted, n = fit_budget(method, budget, self.width)
        if (fitted, n) != (method, budget):
            rule += f"; run as {fitted}@{n} for width {self.width}"
        return Decision(fitted, n, self.width if METHODS[fitted].uses_width else None, "prior",
                        f"prior rules: {rule}", tuple(notes))

    def _calibrated_budget(self, difficulty: str, budget: int, notes: list[str]) -> int | None:
        """The calibrated budget to read for this bin, or ``None`` (with a note) where the
        prior rules must decide."""
        if difficulty in self.fallbacks:
            notes.append(f"bin {difficulty}: {self.fallbacks[difficulty]}; the prior rules "
                         "decide")
            return None
        if difficulty not in self.choices or not self.budgets:
            notes.append(f"the plan has no choices for bin {difficulty}; the prior rules decide")
            return None
        if budget < min(self.budgets) or budget > max(self.budgets):
            notes.append(f"budget {budget} is outside the calibrated budgets "
                         f"{list(self.budgets)}; the prior rules decide")
            return None
        calibrated = max(b for b in self.budgets if b <= budget)
        if calibrated not in self.choices[difficulty]:
            notes.append(f"bin {difficulty} has no calibrated choice at budget {calibrated}; "
                         "the prior rules decide")
            return None
        if calibrated != budget:
            notes.append(f"budget {budget} was not calibrated; using the plan for {calibrated}, "
                         "the largest calibrated budget within it")
        return calibrated

    # -- files ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "source": self.source,
            "rules": RULES,
            "policy": self.policy,
            "scorer": self.scorer,
            "dataset": self.dataset,
            "bins": self.binning.to_dict(),
            "bin_ranges": self.binning.describe(),
            "probe": {"size": self.probe_size, "predictor": self.predictor.to_dict()},
            "width": self.width,
            "budgets": list(self.budgets),
            "choices": {b: {str(n): c.to_dict() for n, c in cells.items()}
                        for b, cells in self.choices.items()},
            "fallbacks": self.fallbacks,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: Mapping, origin: str = "plan") -> Plan:
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise ConfigError(f"{origin} is not a ttscale plan (no \"format\": "
                              f"\"{PLAN_FORMAT}\"); make one with `ttscale plan calibrate`")
        if data.get("version") != PLAN_VERSION:
            raise ConfigError(f"{origin} is plan version {data.get('version')}; this ttscale "
                              f"reads version {PLAN_VERSION}: calibrate it again")
        try:
            return cls(
                source=str(data["source"]),
                policy=dict(data["policy"]),
                scorer=data.get("scorer"),
                binning=Binning.from_dict(data["bins"]),
                predictor=Predictor.from_dict(data["probe"]["predictor"]),
                probe_size=int(data["probe"]["size"]),
                width=int(data["width"]),
                budgets=tuple(int(b) for b in data.get("budgets", ())),
                choices={b: {int(n): Choice.from_dict(c) for n, c in cells.items()}
                         for b, cells in data.get("choices", {}).items()},
                fallbacks=dict(data.get("fallbacks", {})),
                dataset=data.get("dataset"),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{origin} is malformed ({error!r}); calibrate it again"
                              ) from error

    def save(self, path: Path) -> None:
        from ttscale.records import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict())


def load_plan(path: Path) -> Plan:
    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no plan file at {path}; make one with `ttscale plan calibrate`, "
                          "or leave out --plan to use the prior rules") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the plan {path}: {error}") from error
    plan = Plan.from_dict(data, str(path))
    plan.digest = hashlib.sha256(raw).hexdigest()
    return plan


def prior_plan(parameters: int | None, model_name: str, scorer: str | None, width: int,
               probe_size: int = DEFAULT_PROBE_SIZE, dataset: str | None = None) -> Plan:
    return Plan(source="prior", policy={"name": model_name, "parameters": parameters},
                scorer=scorer, binning=absolute_binning(), predictor=prior_predictor(),
                probe_size=probe_size, width=width, dataset=dataset)


def _as_absolute(level: str, binning: Binning) -> str:
    names = binning.names
    if level not in names:
        raise ConfigError(f"unknown difficulty bin {level!r}; the plan has {', '.join(names)}")
    rank = names.index(level) / max(1, len(names) - 1)
    return "easy" if rank < 1 / 3 else "medium" if rank <= 2 / 3 else "hard"


# -- building a calibrated plan ------------------------------------------------------------
def choose_cell(problems: Sequence[ProblemOutcomes], budget: int, probe_size: int,
                seed: int = 0) -> Choice | None:
    """The best measured option for these problems at this budget, or ``None`` if no option
    was measured on all of them."""
    options = set.intersection(*(set(p.outcomes) for p in problems)) if problems else set()
    candidates = []
    for method, n in sorted(options):
        if max(n, probe_size) > budget:
            continue
        accuracy = bootstrap_mean([float(p.outcomes[(method, n)].correct) for p in problems],
                                  seed=seed)
        costs = [p.cost(method, n, probe_size) for p in problems]
        flops = None if any(c is None for c in costs) else sum(costs) / len(costs)  # type: ignore[misc]
        candidates.append(Candidate(method, n, accuracy.value, accuracy.low, accuracy.high,
                                    flops))
    if not candidates:
        return None
    candidates.sort(key=lambda c: (-c.accuracy, math.inf if c.flops is None else c.flops,
                                   c.n, c.method))
    best = candidates[0]
    return Choice(best.method, best.n, len(problems), tuple(candidates))
