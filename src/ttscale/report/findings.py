"""What a run's records say per difficulty level: a table per level and a short paragraph.

The paragraph is computed, never written by hand: for each level, the method and budget with
the highest accuracy (ties go to the one with fewer FLOPs), how far it is above greedy decoding
and above majority vote at the same budget, at what multiple of greedy's FLOPs, and whether
its lead over majority vote holds up on these problems: an exact McNemar test on the problems
where the two disagree (two-sided, 5 %; a bootstrap interval says nothing on a handful of
problems), else the sentence says the lead is within noise."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ttscale.report.summary import SummaryRow, method_rank, summarize

METHOD_NAMES = {"greedy": "greedy decoding", "majority": "majority vote", "bon": "Best-of-N",
                "beam": "beam search", "dvts": "DVTS", "auto": "the planner's choice"}


def records_by_level(records: Iterable[dict]) -> dict[int | None, list[dict]]:
    grouped: dict[int | None, list[dict]] = defaultdict(list)
    for record in records:
        grouped[record.get("level")].append(record)
    return dict(sorted(grouped.items(), key=lambda item: (item[0] is None, item[0] or 0)))


def tables_by_level(records: Iterable[dict], keys: Sequence[tuple[str, int]] | None = None
                    ) -> dict[int | None, list[SummaryRow]]:
    return {level: summarize(group, keys) for level, group in records_by_level(records).items()}


@dataclass(frozen=True)
class LevelFinding:
    level: int | None
    problems: int
    best: SummaryRow | None  # None when no method solved a problem
    greedy: SummaryRow | None
    majority: SummaryRow | None  # at the best method's budget
    wins: int = 0  # problems the best method solves and majority vote does not
    losses: int = 0  # and the other way round

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.wins, self.losses)

    @property
    def significant(self) -> bool:
        return self.wins > self.losses and self.p_value < SIGNIFICANCE


SIGNIFICANCE = 0.05


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: under no difference, each discordant problem goes
    either way with probability 1/2."""
    total = wins + losses
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(wins, losses) + 1)) / 2 ** total
    return min(1.0, 2 * tail)


def _hits(records: Sequence[dict], method: str, n: int) -> dict[str, float]:
    return {r["problem_id"]: float(bool(r["correct"])) for r in records
            if r["method"] == method and r["n"] == n}


def level_finding(level: int | None, records: Sequence[dict]) -> LevelFinding:
    rows = summarize(records)
    problems = len({r["problem_id"] for r in records})
    greedy = next((r for r in rows if r.method == "greedy"), None)
    if not rows or max(r.accuracy for r in rows) == 0:
        return LevelFinding(level, problems, None, greedy, None)
    best = max(rows, key=lambda r: (r.accuracy, -(r.flops or 0.0), -method_rank(r.method)[0]))
    majority = next((r for r in rows if r.method == "majority" and r.n == best.n), None)
    wins = losses = 0
    if majority is not None and best.method != "majority":
        mine, theirs = _hits(records, best.method, best.n), _hits(records, "majority", best.n)
        for problem in set(mine) & set(theirs):
            wins += mine[problem] > theirs[problem]
            losses += mine[problem] < theirs[problem]
    return LevelFinding(level, problems, best, greedy, majority, wins, losses)


def _label(row: SummaryRow) -> str:
    name = METHOD_NAMES.get(row.method, row.method)
    return name if row.method == "greedy" else f"{name} at N = {row.n}"


def describe(finding: LevelFinding) -> str:
    """One or two sentences on one level."""
    count = f"{finding.problems} problem{'s' if finding.problems != 1 else ''}"
    where = (f"Level {finding.level} ({count})" if finding.level is not None
             else f"Problems without a level ({count})")
    if finding.best is None:
        return f"{where}: no method solved any problem."
    best = finding.best
    text = f"{where}: {_label(best)} wins with {best.accuracy:.0%}"
    compared = []
    if finding.greedy is not None and best.method != "greedy":
        compared.append(f"greedy {finding.greedy.accuracy:.0%}")
    if finding.majority is not None and best.method != "majority":
        compared.append(f"majority vote {finding.majority.accuracy:.0%}")
    if compared:
        text += f" ({', '.join(compared)})"
    if (finding.greedy is not None and best.method != "greedy" and best.flops
            and finding.greedy.flops):
        text += f", at {best.flops / finding.greedy.flops:.0f}× greedy's FLOPs"
    text += "."
    if best.method in ("greedy", "majority"):
        return text + " The verifier's searches did not help here."
    if finding.majority is None:
        return text
    evidence = (f"it solves {finding.wins} problem{'s' if finding.wins != 1 else ''} that "
                f"majority vote misses and misses {finding.losses} that it solves; exact "
                f"McNemar p = {finding.p_value:.2g}")
    if finding.significant:
        return text + f" Its lead over majority vote is significant ({evidence})."
    return (text + f" Its lead over majority vote is within noise on {count} ({evidence}).")


def findings_paragraph(records: Iterable[dict]) -> str:
    return " ".join(describe(level_finding(level, group))
                    for level, group in records_by_level(records).items())
