"""What a search method works with: the problem, the policy, the scorer, the settings, the
tree it grows and the ledger that charges every call. Methods see engines only through this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from ttscale.compute import Ledger, TokenCount
from ttscale.engines.base import Continuation, Policy
from ttscale.errors import ConfigError
from ttscale.rewards.base import Scorer, check_scores
from ttscale.search.tree import Tree
from ttscale.settings import SearchSettings
from ttscale.steps import Step
from ttscale.thoughts import ThinkingFormat, without_markers

if TYPE_CHECKING:
    from ttscale.search.result import Candidate, Details


@dataclass(frozen=True)
class Choice:
    """What a chooser picked for one problem: a method and its budget (and width), the
    samples it drew to decide (the chosen method reuses them), and why."""

    method: str
    n: int
    width: int | None
    reuse: tuple[Candidate, ...]
    explanation: Details  # what the run record stores
    thinking_budget: int | None = None  # the method's whole solutions think under it


class MethodChooser(Protocol):
    """Chooses the method for one problem within a budget (the planner implements it)."""

    async def choose(self, ctx: SearchContext, budget: int) -> Choice: ...


@dataclass
class SearchContext:
    problem: str  # the problem statement, as scorers read it
    prompt: str  # the policy's prefix, ending where the first step begins
    policy: Policy
    scorer: Scorer | None
    settings: SearchSettings
    ledger: Ledger
    tree: Tree = field(default_factory=Tree)
    # whole solutions already sampled from the root (its sample streams 0..k-1): a method may
    # take them as its first samples instead of drawing them again
    reuse: tuple[Candidate, ...] = ()
    # what ``auto`` asks which method to run (the planner); None where no plan is given
    chooser: MethodChooser | None = None
    # a reasoning policy's thought markers (None: the policy does not think)
    thinking: ThinkingFormat | None = None

    def fresh(self, scorer: Scorer | None) -> SearchContext:
        """A context for another search of the same problem: its own tree and ledger."""
        ctx = replace(self, scorer=scorer, tree=Tree(), reuse=())
        ctx.ledger = ctx.new_ledger()
        return ctx

    def new_ledger(self) -> Ledger:
        """An empty ledger priced for this context's policy and scorer."""
        return Ledger(self.policy.info.parameters, getattr(self.scorer, "parameters", None))

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
        if self.thinking is not None:  # a PRM reads the thought's words, not its markers
            solutions = [[without_markers(s, self.thinking) for s in steps]
                         for steps in solutions]
        batch = check_scores(await self.scorer.score(self.problem, solutions), solutions,
                             self.scorer.name)
        self.ledger.add_scorer(batch.tokens)
        return batch.scores
