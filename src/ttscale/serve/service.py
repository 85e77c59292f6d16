"""What the server searches with: the policy, the scorers and the prompt format every request's
search uses, and the settings that bound what it takes on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ttscale.engines.base import Policy
from ttscale.errors import ConfigError, TTScaleError
from ttscale.planner.plan import Plan, load_plan
from ttscale.prompts import PromptFormat
from ttscale.rewards import canonical_spec, load_scorer, scorer_kind
from ttscale.rewards.base import Scorer
from ttscale.run.scheduler import batch_across_calls, batch_scorer_across_calls
from ttscale.run.solve import SolveResult, solve_async
from ttscale.search import METHODS
from ttscale.serve.defaults import ServerDefaults, ServerLimits
from ttscale.serve.refusals import bad
from ttscale.serve.requests import SearchRequest
from ttscale.settings import SearchSettings

# scorers a request may name without the server having been started with them: they run on
# the policy, need no model, or ship with ttscale, so loading one is cheap and names no path
_LOADABLE_KINDS = ("model-free", "policy", "shipped")


@dataclass(frozen=True)
class ServerConfig:
    """How the server searches, what it accepts and how much it takes on."""

    defaults: ServerDefaults = field(default_factory=ServerDefaults)
    limits: ServerLimits = field(default_factory=ServerLimits)
    max_step_tokens: int = 256
    max_depth: int = 12
    max_running: int = 4  # searches at once; their engine calls share batches
    # A waiting request holds only its body (at most max_body_bytes, and its parsed copy):
    # 512 of them are at most about 1 GiB. Real overload is refused before that, when the
    # wait would outlast request_timeout_s (serve/admission.py).
    max_waiting: int = 512
    request_timeout_s: float = 600.0
    max_body_bytes: int = 2**20
    api_key: str | None = None
    served_model_name: str | None = None  # default: the policy's name


class SearchService:
    """The policy, the scorers and the prompt format that every request's search uses."""

    def __init__(self, policy: Policy, prompt: PromptFormat, config: ServerConfig,
                 scorers: dict[str, Scorer | None] | None = None,
                 plan: Plan | None = None) -> None:
        self.policy = batch_across_calls(policy)
        self.prompt = prompt
        self.config = config
        self.plan = plan
        self._scorers: dict[str, Scorer | None] = {
            canonical_spec(spec): batch_scorer_across_calls(scorer)
            for spec, scorer in (scorers or {}).items()}
        self._scorers.setdefault("none", None)
        self.delimiter = prompt.apply(SearchSettings()).delimiter

    @property
    def model_name(self) -> str:
        return self.config.served_model_name or self.policy.info.name

    def scorer_for(self, request: SearchRequest) -> tuple[str, Scorer | None]:
        """The scorer the request names (as run records name it), loading the cheap ones on
        first use; a checkpoint or URL the server was not started with is refused."""
        uses_scorer = METHODS[request.method].uses_scorer
        if not uses_scorer:
            return "none", None
        try:
            spec = canonical_spec(request.prm)
        except ConfigError as exc:
            raise bad(str(exc), "prm") from exc
        if spec not in self._scorers:
            self._scorers[spec] = self._load_on_request(spec, request.prm)
        scorer = self._scorers[spec]
        if scorer is None:
            raise bad(f"{request.method} needs a scorer; 'prm' is none. Name one, e.g. "
                      f"\"confidence\", or use method majority", "prm")
        return spec, scorer

    def _load_on_request(self, spec: str, asked: str) -> Scorer:
        if scorer_kind(spec) not in _LOADABLE_KINDS:
            raise bad(f"the scorer {spec!r} is not loaded on this server; it has "
                      f"{', '.join(sorted(self._scorers))}. Start the server with "
                      f"--prm {asked} to serve it", "prm")
        try:
            loaded = load_scorer(spec, policy=self.policy)
        except TTScaleError as exc:
            raise bad(f"the scorer {spec!r} could not be loaded: {exc}", "prm") from exc
        return batch_scorer_across_calls(loaded)

    def settings(self, request: SearchRequest) -> SearchSettings:
        return SearchSettings(
            temperature=request.temperature, top_p=request.top_p,
            max_step_tokens=min(self.config.max_step_tokens, request.max_tokens),
            max_depth=self.config.max_depth, max_solution_tokens=request.max_tokens,
            width=request.width, step_aggregation=request.step_aggregation,
            answer_aggregation=request.aggregation, seed=request.seed,
            particle_temperature=request.particle_temperature)

    async def solve(self, request: SearchRequest, scorer: Scorer | None) -> SolveResult:
        return await solve_async(
            request.problem, policy=self.policy, method=request.method, n=request.budget,
            scorer=scorer, settings=self.settings(request), prompt=self.prompt,
            plan=self.plan, keep=request.n)

    def model_ids(self) -> list[str]:
        """The served name, and the name with each search's prefix at the default budget."""
        name, budget = self.model_name, self.config.defaults.budget
        return [name, *(f"{m}/{name}" if spec.fixed_budget else f"{m}-{budget}/{name}"
                        for m, spec in METHODS.items())]

    async def close(self) -> None:
        await self.policy.close()


def load_service(*, engine, prm: list[str], prompt: PromptFormat, config: ServerConfig,
                 plan_path: Path | None = None, scorer_options=None) -> SearchService:
    """Load every scorer named on the command line (the first is the default) beside the
    policy."""
    scorers = {spec: load_scorer(spec, policy=engine, options=scorer_options) for spec in prm}
    plan = load_plan(plan_path) if plan_path is not None else None
    return SearchService(engine, prompt, config, scorers, plan)
