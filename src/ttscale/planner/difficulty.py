"""Problem difficulty as the policy's pass@1, and bins over it.

The paper's absolute bins (Liu et al. 2025, Sec. 4.3): easy when pass@1 > 50 %, medium from
10 % to 50 %, hard below 10 %. Quantile bins (Snell et al. 2024; search-and-learn) split a
problem set into equal parts by pass@1 instead: ``level1`` holds the easiest problems.

pass@1 is estimated from sampled solutions, so every estimate carries its Wilson interval."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ttscale.errors import ConfigError
from ttscale.stats import Estimate, wilson_interval

ABSOLUTE_BINS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class PassRate:
    """pass@1 of one problem from ``samples`` sampled solutions, ``correct`` of them right."""

    problem_id: str
    correct: int
    samples: int

    @property
    def estimate(self) -> Estimate:
        return wilson_interval(self.correct, self.samples)

    @property
    def value(self) -> float:
        return self.correct / self.samples


@dataclass(frozen=True)
class BinEdge:
    """A bin holds problems with pass@1 above ``lower`` (or equal to it when ``inclusive``)."""

    name: str
    lower: float
    inclusive: bool


@dataclass(frozen=True)
class Binning:
    """Bins from easiest to hardest; the last bin takes every problem the others did not."""

    kind: str  # "absolute" or "quantile"
    edges: tuple[BinEdge, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(edge.name for edge in self.edges)

    def assign(self, pass_rate: float) -> str:
        for edge in self.edges[:-1]:
            if pass_rate > edge.lower or (edge.inclusive and pass_rate == edge.lower):
                return edge.name
        return self.edges[-1].name

    def describe(self) -> dict[str, str]:
        """Each bin's range in words, for plan files and tables."""
        ranges = {}
        upper = "1"
        for edge in self.edges[:-1]:
            sign = ">=" if edge.inclusive else ">"
            ranges[edge.name] = f"pass@1 {sign} {edge.lower:.3g}" + (
                "" if upper == "1" else f" and {upper}")
            upper = f"{'<' if edge.inclusive else '<='} {edge.lower:.3g}"
        ranges[self.edges[-1].name] = f"pass@1 {upper}" if len(self.edges) > 1 else "all"
        return ranges

    def to_dict(self) -> dict:
        return {"kind": self.kind, "edges": [
            {"name": e.name, "lower": None if math.isinf(e.lower) else e.lower,
             "inclusive": e.inclusive} for e in self.edges]}

    @classmethod
    def from_dict(cls, data: dict) -> Binning:
        try:
            edges = tuple(BinEdge(str(e["name"]),
                                  -math.inf if e["lower"] is None else float(e["lower"]),
                                  bool(e["inclusive"])) for e in data["edges"])
            kind = str(data["kind"])
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"the plan's bins are malformed ({error!r})") from error
        if not edges:
            raise ConfigError("the plan defines no difficulty bins")
        return cls(kind, edges)


def absolute_binning() -> Binning:
    return Binning("absolute", (BinEdge("easy", 0.5, False), BinEdge("medium", 0.1, True),
                                BinEdge("hard", -math.inf, False)))


def quantile_binning(pass_rates: Sequence[float], bins: int) -> Binning:
    """``bins`` bins with (as near as ties allow) equal numbers of problems."""
    if bins < 2:
        raise ConfigError(f"quantile bins need at least 2 bins, got {bins}")
    if len(pass_rates) < bins:
        raise ConfigError(f"{len(pass_rates)} problems cannot fill {bins} quantile bins")
    ordered = np.sort(np.asarray(pass_rates, dtype=np.float64))[::-1]  # easiest first
    edges = []
    for k in range(1, bins):
        # the k-th bin's lowest member: its pass@1 and everything above stays in bins 1..k
        edges.append(BinEdge(f"level{k}", float(ordered[round(k * len(ordered) / bins) - 1]),
                             True))
    edges.append(BinEdge(f"level{bins}", -math.inf, False))
    return Binning("quantile", tuple(edges))


def parse_binning(spec: str) -> tuple[str, int]:
    """``absolute`` or ``quantile:K`` (``quantile`` alone is 5 bins, as in search-and-learn)."""
    name, _, count = spec.partition(":")
    if name == "absolute" and not count:
        return "absolute", 3
    if name == "quantile":
        try:
            bins = int(count) if count else 5
        except ValueError:
            bins = 0
        if bins >= 2:
            return "quantile", bins
    raise ConfigError(f"unknown difficulty bins {spec!r}; use 'absolute' (the paper's easy/"
                      "medium/hard) or 'quantile:K' (K equal-sized levels)")


def pass_rates_from_records(records: Iterable[dict]) -> dict[str, PassRate]:
    """pass@1 per problem from sampled-solution records (the largest record per problem)."""
    best: dict[str, dict] = {}
    for record in records:
        current = best.get(record["problem_id"])
        if current is None or len(record["candidates"]) > len(current["candidates"]):
            best[record["problem_id"]] = record
    return {pid: PassRate(pid, sum(bool(c["correct"]) for c in r["candidates"]),
                          len(r["candidates"]))
            for pid, r in best.items() if r["candidates"]}
