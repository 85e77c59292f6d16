"""The prior plan: the paper's rules, for a policy nobody has calibrated.

Liu et al., "Can 1B LLM Surpass 405B LLM? Rethinking Compute-Optimal Test-Time Scaling"
(arXiv 2502.06703, 2025), Sec. 4.3 and Takeaway 3, with PRM-guided search:

- policies under 7B: Best-of-N on easy problems, beam search on medium and hard ones
  (search beats sampling for small policies);
- 7B to 32B: DVTS on easy and medium problems, beam search on hard ones;
- 72B and up: Best-of-N at every difficulty.

The paper's code adds, for AIME-like hard sets, DVTS below 14B and Best-of-N from 14B, and
Best-of-N for long-reasoning (R1-distilled) policies, whose long chains of thought have no
step structure for a search to use; ttscale applies it to every policy whose prompt expects a
thought (Qwen3 in thinking mode, QwQ), by its name or its chat template. The answer is then
the vote of the aggregation in use (PRM-weighted by default, majority without a PRM).

The size classes are cut between the sizes the paper studied (0.5B-3B, 7B-8B, 14B-32B, 70B-72B)
so that nominal sizes land where the paper put them: a "7B" Qwen2.5 has 7.6B parameters and a
"3B" Llama 3.2 has 3.2B, a "72B" Qwen2.5 72.7B and a "70B" Llama 3.1 70.6B."""

from __future__ import annotations

import re

from ttscale.errors import ConfigError

SMALL_BELOW = 6e9  # the paper's "< 7B"
LARGE_FROM = 60e9  # the paper's ">= 72B"
HARD_SET_BON_FROM = 12e9  # the paper's code: BoN from 14B on AIME-like sets
HARD_SETS = frozenset({"aime24"})
LONG_REASONING_NAMES = re.compile(r"r1[-_.]?distill|deepseek[-_.]?r1|\bqwq\b",
                                  re.IGNORECASE)

RULES = (
    "Prior plan (Liu et al. 2025, arXiv 2502.06703): policy < 7B: BoN on easy, beam search on "
    "medium and hard; 7B-32B: DVTS on easy and medium, beam search on hard; >= 72B: BoN "
    "everywhere; AIME-like hard sets: DVTS below 14B, BoN from 14B; long-reasoning "
    "(R1-distilled) policies: BoN.")


def is_long_reasoning(model_name: str) -> bool:
    return bool(LONG_REASONING_NAMES.search(model_name))


def size_class(parameters: int | None) -> str:
    if parameters is None:
        raise ConfigError(
            "the policy's parameter count is unknown, and the prior plan depends on it: pass "
            "--params (e.g. 7e9) or use a calibrated plan (ttscale plan calibrate)")
    if parameters < SMALL_BELOW:
        return "small"
    return "large" if parameters >= LARGE_FROM else "medium"


def prior_method(parameters: int | None, difficulty: str, *, model_name: str = "",
                 dataset: str | None = None, thinks: bool = False) -> tuple[str, str]:
    """(method, the rule that chose it) for a policy size and an easy/medium/hard bin.
    ``thinks``: the prompt expects a thought (a reasoning policy, whatever its name)."""
    if difficulty not in ("easy", "medium", "hard"):
        raise ConfigError(f"the prior plan knows the bins easy, medium and hard, not "
                          f"{difficulty!r}")
    billions = f"{parameters / 1e9:.3g}B" if parameters else "unknown size"
    if model_name and is_long_reasoning(model_name):
        return "bon", f"long-reasoning policy ({model_name}): bon"
    if thinks:
        return "bon", "reasoning policy (it thinks before it answers): bon"
    if dataset in HARD_SETS:
        if parameters is None:
            size_class(parameters)  # raises with the fix
        if parameters < HARD_SET_BON_FROM:  # type: ignore[operator]
            return "dvts", f"AIME-like set, policy {billions} (below 14B): dvts"
        return "bon", f"AIME-like set, policy {billions} (14B and up): bon"
    size = size_class(parameters)
    if size == "small":
        method = "bon" if difficulty == "easy" else "beam"
        return method, f"policy {billions} (the < 7B class), {difficulty}: {method}"
    if size == "medium":
        method = "beam" if difficulty == "hard" else "dvts"
        return method, f"policy {billions} (the 7B-32B class), {difficulty}: {method}"
    return "bon", f"policy {billions} (the >= 72B class): bon"
