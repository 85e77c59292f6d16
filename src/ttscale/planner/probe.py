"""Difficulty at inference: a small probe of sampled solutions, and a predictor from what the
probe shows to a difficulty bin.

The answer key is unknown at inference, so pass@1 cannot be measured. The probe samples a few
whole solutions (the first samples of the problem's pool: Best-of-N and majority vote reuse
them whole, beam search and DVTS as their first steps) and reads two signals: *agreement*, the
share of the probe's solutions that give the most common answer (equivalent answers together),
and the scorer's mean solution score. A predictor maps ``weight * agreement + (1 - weight) *
score`` to a bin through thresholds, fitted on calibration problems whose bins are known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ttscale.errors import ConfigError
from ttscale.grading import group_answers

DEFAULT_PROBE_SIZE = 4
# the agreement weights tried, in this order; a tie keeps the earlier (simpler) one
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)


@dataclass(frozen=True)
class ProbeFeatures:
    samples: int
    agreement: float  # share of samples in the largest group of equivalent answers
    answered: float  # share of samples with an answer
    score: float | None  # mean solution score; None without a scorer

    def to_dict(self) -> dict:
        return {"samples": self.samples, "agreement": round(self.agreement, 6),
                "answered": round(self.answered, 6),
                "score": None if self.score is None else round(self.score, 6)}


def probe_features(answers: Sequence[str | None], scores: Sequence[float] | None
                   ) -> ProbeFeatures:
    if not answers:
        raise ValueError("a probe needs at least one sampled solution")
    groups = group_answers(answers)
    largest = max((len(g) for g in groups), default=0)
    answered = sum(a is not None for a in answers)
    mean_score = None if scores is None else sum(scores) / len(scores)
    return ProbeFeatures(len(answers), largest / len(answers), answered / len(answers),
                         mean_score)


@dataclass(frozen=True)
class Predictor:
    """Bin ``k`` (0 the easiest) is the first whose threshold the signal exceeds; a signal
    above no threshold falls in the last bin."""

    bins: tuple[str, ...]
    weight: float
    thresholds: tuple[float, ...]
    source: str  # "fitted" or "prior"

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.bins) - 1:
            raise ConfigError(f"a predictor over {len(self.bins)} bins needs "
                              f"{len(self.bins) - 1} thresholds, got {len(self.thresholds)}")
        if not 0 <= self.weight <= 1:
            raise ConfigError(f"the predictor's agreement weight must be in [0, 1], got "
                              f"{self.weight}")

    def signal(self, features: ProbeFeatures) -> float:
        if features.score is None or self.weight == 1:
            return features.agreement
        return self.weight * features.agreement + (1 - self.weight) * features.score

    def predict(self, features: ProbeFeatures) -> str:
        value = self.signal(features)
        for name, threshold in zip(self.bins, self.thresholds, strict=False):
            if value > threshold:
                return name
        return self.bins[-1]

    def to_dict(self) -> dict:
        return {"bins": list(self.bins), "weight": self.weight,
                "thresholds": [round(t, 6) for t in self.thresholds], "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> Predictor:
        try:
            return cls(tuple(data["bins"]), float(data["weight"]),
                       tuple(float(t) for t in data["thresholds"]), str(data["source"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"the plan's difficulty predictor is malformed ({error!r})"
                              ) from error


def prior_predictor() -> Predictor:
    """Without calibration: easy when more than half the probe agrees, hard when no two
    solutions agree out of four (a quarter or less), medium between. A problem the policy
    solves more often than not tends to give its right answer most of the time; on a problem
    it rarely solves, its wrong answers scatter."""
    return Predictor(("easy", "medium", "hard"), 1.0, (0.5, 0.25), "prior")


def fit_predictor(features: Sequence[ProbeFeatures], bins: Sequence[str],
                  bin_names: Sequence[str]) -> tuple[Predictor, float]:
    """The weight and thresholds that put the most calibration problems in their true bin
    (``bins[i]`` is problem i's bin); returns the predictor and its accuracy on them."""
    if len(features) != len(bins) or not features:
        raise ValueError("fit_predictor needs one bin per probe, and at least one probe")
    has_scores = all(f.score is not None for f in features)
    best: tuple[int, Predictor] | None = None
    for weight in WEIGHTS if has_scores else (1.0,):
        probe = Predictor(tuple(bin_names), weight, (0.0,) * (len(bin_names) - 1), "fitted")
        signals = [probe.signal(f) for f in features]
        thresholds, matches = _ordinal_thresholds(signals, bins, bin_names)
        if best is None or matches > best[0]:
            best = (matches, Predictor(tuple(bin_names), weight, thresholds, "fitted"))
    assert best is not None
    return best[1], best[0] / len(features)


def _ordinal_thresholds(signals: Sequence[float], bins: Sequence[str],
                        bin_names: Sequence[str]) -> tuple[tuple[float, ...], int]:
    """Cut the signal axis, highest values to the easiest bin, so that the most problems land
    in their own bin (dynamic programming over the distinct signal values)."""
    index = {name: k for k, name in enumerate(bin_names)}
    values = sorted(set(signals), reverse=True)
    counts = [[0] * len(bin_names) for _ in values]
    position = {v: j for j, v in enumerate(values)}
    for signal, name in zip(signals, bins, strict=True):
        counts[position[signal]][index[name]] += 1
    k_bins, m = len(bin_names), len(values)
    # best[k][j]: most matches placing the first j values in bins 0..k, in order
    best = [[0] * (m + 1) for _ in range(k_bins)]
    for k in range(k_bins):
        for j in range(1, m + 1):
            stay = best[k][j - 1] + counts[j - 1][k]
            best[k][j] = max(best[k - 1][j], stay) if k else stay
    assignment = [0] * m
    k, j = k_bins - 1, m
    while j > 0:  # walk back: value j-1 went to bin k unless bin k-1 did as well without it
        if k > 0 and best[k][j] == best[k - 1][j]:
            k -= 1
            continue
        assignment[j - 1] = k
        j -= 1
    thresholds = []
    for k in range(k_bins - 1):
        easier = [values[j] for j in range(m) if assignment[j] <= k]
        harder = [values[j] for j in range(m) if assignment[j] > k]
        if not easier:
            thresholds.append(max(values) + 1.0)  # nothing is this easy
        elif not harder:
            thresholds.append(min(values) - 1.0)
        else:
            thresholds.append((min(easier) + max(harder)) / 2)
    return tuple(thresholds), best[k_bins - 1][m]
