"""What a search method works with: the problem, the policy, the scorer, the settings, the
tree it grows and the ledger that charges every call. Methods see engines only through this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ttscale.compute import Ledger, TokenCount
from ttscale.engines.base import Continuation, Policy
from ttscale.errors import ConfigError
from ttscale.rewards.base import Scorer, check_scores
from ttscale.search.tree import Tree
from ttscale.settings import SearchSettings
from ttscale.steps import Step


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
