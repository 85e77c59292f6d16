"""What a search method works with: the problem, the policy, the scorer, the settings, the
tree it grows and the ledger that charges every call. Methods see engines only through this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ttscale.compute import Ledger, TokenCount
from ttscale.engines.base import Continuation, Policy
from ttscale.errors import ConfigError
from ttscale.rewards.base import Scorer, check_scores
from ttscale.search.aggregate import (
    ANSWER_AGGREGATIONS,
    STEP_AGGREGATIONS,
    AnswerAggregation,
    StepAggregation,
)
from ttscale.search.tree import Tree
from ttscale.steps import DEFAULT_STEP_DELIMITER, Step


@dataclass(frozen=True)
class SearchSettings:
    """Search knobs. Defaults follow the paper's code and search-and-learn: temperature 0.7,
    top_p 1.0, up to 2048 tokens per step, depth at most 40, width M = 4."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_step_tokens: int = 2048
    max_depth: int = 40
    max_solution_tokens: int = 4096
    width: int = 4
    step_delimiter: str | None = None  # None: the prompt format's (see PromptFormat.apply)
    end_stops: tuple[str, ...] = ()  # strings that end a whole solution (from the prompt format)
    step_aggregation: StepAggregation = "last"
    answer_aggregation: AnswerAggregation = "prm_vote"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 5:
            raise ConfigError(f"temperature must be in [0, 5], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("max_step_tokens", "max_depth", "max_solution_tokens", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.step_delimiter == "":
            raise ConfigError("the step delimiter must not be empty")
        if self.step_aggregation not in STEP_AGGREGATIONS:
            raise ConfigError(f"unknown step aggregation {self.step_aggregation!r}; "
                              f"choose one of {', '.join(STEP_AGGREGATIONS)}")
        if self.answer_aggregation not in ANSWER_AGGREGATIONS:
            raise ConfigError(f"unknown answer aggregation {self.answer_aggregation!r}; "
                              f"choose one of {', '.join(ANSWER_AGGREGATIONS)}")

    @property
    def delimiter(self) -> str:
        return self.step_delimiter or DEFAULT_STEP_DELIMITER

    @property
    def step_stops(self) -> tuple[str, ...]:
        return (self.delimiter, *self.end_stops)


@dataclass
class SearchContext:
    problem: str  # the problem statement, as scorers read it
    prompt: str  # the policy's prefix, ending where the first step begins
    policy: Policy
    scorer: Scorer | None
    settings: SearchSettings
    ledger: Ledger
    tree: Tree = field(default_factory=Tree)

    def prefix(self, steps: Sequence[Step]) -> str:
        """The policy's input to continue a partial solution."""
        if not steps:
            return self.prompt
        delimiter = self.settings.delimiter
        return self.prompt + delimiter.join(s.text for s in steps) + delimiter

    async def extend(
        self,
        prefixes: Sequence[str],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float | None = None,
        seed_offset: int = 0,
        first_sample: int = 0,
    ) -> list[list[Continuation]]:
        settings = self.settings
        results = await self.policy.extend(
            list(prefixes), n, list(stop), max_tokens,
            settings.temperature if temperature is None else temperature,
            settings.top_p, settings.seed + seed_offset, first_sample=first_sample,
        )
        tokens = TokenCount.total(
            TokenCount(c.prompt_tokens, c.cached_prompt_tokens, c.generated_tokens)
            for conts in results for c in conts
        )
        self.ledger.add_policy(tokens)
        return results

    async def score(self, solutions: Sequence[Sequence[Step]]) -> list[list[float]]:
        if self.scorer is None:
            raise ConfigError("this method needs a scorer (--scorer); none was given")
        batch = check_scores(await self.scorer.score(self.problem, solutions), solutions,
                             self.scorer.name)
        self.ledger.add_scorer(batch.tokens)
        return batch.scores
