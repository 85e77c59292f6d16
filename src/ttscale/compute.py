"""The compute ledger: tokens in, FLOPs out.

FLOPs follow the usual dense-transformer estimate, 2 × parameters × tokens processed, where
tokens processed are the generated tokens plus the prompt tokens actually computed. Prompt
tokens served from a prefix cache are counted apart and cost nothing. Policy and scorer are
kept separately; parameter counts come from the models themselves (``ModelInfo``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenCount:
    prompt: int = 0
    cached_prompt: int = 0
    generated: int = 0

    def __add__(self, other: TokenCount) -> TokenCount:
        return TokenCount(
            self.prompt + other.prompt,
            self.cached_prompt + other.cached_prompt,
            self.generated + other.generated,
        )

    @property
    def computed(self) -> int:
        """Tokens the model actually ran: prompt not served from cache, plus generated."""
        return self.prompt - self.cached_prompt + self.generated

    def to_dict(self) -> dict[str, int]:
        return {"prompt": self.prompt, "cached_prompt": self.cached_prompt,
                "generated": self.generated}

    @classmethod
    def from_dict(cls, data: dict) -> TokenCount:
        return cls(int(data["prompt"]), int(data["cached_prompt"]), int(data["generated"]))

    @classmethod
    def total(cls, counts: Iterable[TokenCount]) -> TokenCount:
        result = cls()
        for count in counts:
            result = result + count
        return result


def flops(parameters: int | None, tokens: TokenCount) -> float | None:
    """2 × N × D; ``None`` when the model's size is unknown (never a guess)."""
    if parameters is None:
        return None
    return 2.0 * parameters * tokens.computed


@dataclass
class Ledger:
    """Token counts of one problem's search, for the policy and the scorer separately."""

    policy_parameters: int | None
    scorer_parameters: int | None = None
    policy: TokenCount = field(default_factory=TokenCount)
    scorer: TokenCount = field(default_factory=TokenCount)
    policy_calls: int = 0
    scorer_calls: int = 0

    def add_policy(self, tokens: TokenCount) -> None:
        self.policy = self.policy + tokens
        self.policy_calls += 1

    def add_scorer(self, tokens: TokenCount) -> None:
        self.scorer = self.scorer + tokens
        self.scorer_calls += 1

    @property
    def policy_flops(self) -> float | None:
        return flops(self.policy_parameters, self.policy)

    @property
    def scorer_flops(self) -> float | None:
        if self.scorer.computed == 0:
            return 0.0
        return flops(self.scorer_parameters, self.scorer)

    @property
    def total_flops(self) -> float | None:
        parts = (self.policy_flops, self.scorer_flops)
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return {
            "policy_parameters": self.policy_parameters,
            "scorer_parameters": self.scorer_parameters,
            "policy_tokens": self.policy.to_dict(),
            "scorer_tokens": self.scorer.to_dict(),
            "policy_calls": self.policy_calls,
            "scorer_calls": self.scorer_calls,
            "policy_flops": self.policy_flops,
            "scorer_flops": self.scorer_flops,
            "total_flops": self.total_flops,
        }


def format_flops(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"
