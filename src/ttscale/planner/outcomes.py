"""What each method achieved on each problem, read from run records: the material a plan is
built from (calibration half) and replayed on (evaluation half).

Every method's records of a problem come from the same seeded sample streams, so the probe a
live ``--method auto`` run would draw is the first samples of the problem's pool: its answers
and scores are read from the pooled record at the probe's size."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ttscale.planner.options import option_label, split_option
from ttscale.planner.probe import ProbeFeatures, probe_features
from ttscale.search import METHODS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    correct: bool
    flops: float | None  # policy + scorer, this record alone
    scorer_flops: float | None


@dataclass
class ProblemOutcomes:
    problem_id: str
    outcomes: dict[tuple[str, int], Outcome] = field(default_factory=dict)
    probe: ProbeFeatures | None = None
    probe_flops: float | None = None
    probe_scorer_flops: float | None = None

    def cost(self, method: str, n: int, probe_size: int) -> float | None:
        """FLOPs of answering with ``method`` at ``n`` after the probe (``probe_size`` samples,
        whose cost the probe record holds). Pooled methods reuse the probe's samples; a tree
        search is charged the whole probe on top of its own record (conservative: a live run
        also reuses the probe's first steps)."""
        outcome = self.outcomes[(method, n)]
        if self.probe_flops is None or outcome.flops is None:
            return None
        name, thinking_budget = split_option(method)
        spec = METHODS[name]
        # under a thinking budget the probe's samples (drawn without one) are not reused
        if spec.pooled and thinking_budget is None:
            # it reads the probe's samples first, then more of the same streams: the probe at
            # least (a small budget, or an adaptive method that stops within the probe); a
            # method that scores nothing still paid for the probe's scoring
            scoring = 0.0 if spec.uses_scorer else (self.probe_scorer_flops or 0.0)
            return max(outcome.flops + scoring, self.probe_flops)
        return outcome.flops + self.probe_flops


def _probe_record(records: dict[tuple[str, int], dict], probe_size: int) -> dict | None:
    return records.get(("bon", probe_size)) or records.get(("majority", probe_size))


def collect_outcomes(records: Iterable[dict], probe_size: int) -> dict[str, ProblemOutcomes]:
    """Outcomes per problem; problems without a probe record get ``probe = None``. A record
    drawn under a thinking budget is the option ``method+thinkB``; the probe is read from
    records without one (as a live ``auto`` run draws it)."""
    by_problem: dict[str, dict[tuple[str, int], dict]] = defaultdict(dict)
    for record in records:
        if record.get("method") == "auto":
            continue
        label = option_label(record["method"], record.get("thinking_budget"))
        by_problem[record["problem_id"]][(label, int(record["n"]))] = record
    result = {}
    for problem_id, mine in by_problem.items():
        item = ProblemOutcomes(problem_id)
        for key, record in mine.items():
            ledger = record["ledger"]
            item.outcomes[key] = Outcome(bool(record["correct"]), ledger.get("total_flops"),
                                         ledger.get("scorer_flops"))
        probe = _probe_record(mine, probe_size)
        if probe is not None and probe["candidates"]:
            candidates = probe["candidates"]
            scores = [c["score"] for c in candidates]
            item.probe = probe_features([c["answer"] for c in candidates],
                                        None if any(s is None for s in scores) else scores)
            item.probe_flops = probe["ledger"].get("total_flops")
            item.probe_scorer_flops = probe["ledger"].get("scorer_flops")
        result[problem_id] = item
    return result
