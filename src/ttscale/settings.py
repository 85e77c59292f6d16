"""The search's settings: one object, and the one place where each default is written.

Defaults follow the paper's code and search-and-learn. Everything that needs a default
(the command line, recipe files, the server, the Python API) reads it from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

from ttscale.errors import ConfigError
from ttscale.steps import DEFAULT_STEP_DELIMITER

StepAggregation = Literal["last", "min", "mean", "prod"]
AnswerAggregation = Literal["prm_max", "prm_vote", "majority"]
STEP_AGGREGATIONS: tuple[str, ...] = get_args(StepAggregation)
ANSWER_AGGREGATIONS: tuple[str, ...] = get_args(AnswerAggregation)


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
    # a reasoning policy's thought (search/thinking_budget.py): at most this many tokens before
    # the answer is forced, and an early exit probing the answer every probe_every tokens that
    # stops when probe_agreement probes in a row agree
    thinking_budget: int | None = None
    probe_every: int | None = None
    probe_agreement: int = 3
    # particle filtering and Gibbs (search/particle_filtering.py) weigh a particle by
    # softmax(logit(score) / particle_temperature): 1 is the paper's and its_hub's default; a
    # higher one flattens the weights, so a coarse scorer (0, 0.5, 1) does not resample one
    # particle into every slot
    particle_temperature: float = 1.0

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
        for name in ("thinking_budget", "probe_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.thinking_budget is not None and self.thinking_budget >= self.max_solution_tokens:
            raise ConfigError(f"the thinking budget ({self.thinking_budget} tokens) leaves no "
                              f"room for the answer within max_solution_tokens "
                              f"({self.max_solution_tokens}): lower it or raise the other")
        if not 0 < self.particle_temperature <= MAX_PARTICLE_TEMPERATURE:
            raise ConfigError(f"particle_temperature must be above 0 and at most "
                              f"{MAX_PARTICLE_TEMPERATURE:g}, got {self.particle_temperature}")
        if self.probe_agreement < 2:
            raise ConfigError(f"probe_agreement must be at least 2, got {self.probe_agreement}")
        if self.answer_aggregation not in ANSWER_AGGREGATIONS:
            raise ConfigError(f"unknown answer aggregation {self.answer_aggregation!r}; "
                              f"choose one of {', '.join(ANSWER_AGGREGATIONS)}")

    @property
    def thinks_in_chunks(self) -> bool:
        """Whether whole solutions are drawn under a thinking budget or early exit."""
        return self.thinking_budget is not None or self.probe_every is not None

    def identity(self) -> dict:
        """The settings as a run's identity holds them: fields added after runs were first
        recorded appear only when set, so those runs still resume."""
        values = asdict(self)
        for name in LATER_FIELDS:
            if values[name] == getattr(SearchSettings, name):
                del values[name]
        return values

    @property
    def delimiter(self) -> str:
        return self.step_delimiter or DEFAULT_STEP_DELIMITER

    @property
    def step_stops(self) -> tuple[str, ...]:
        return (self.delimiter, *self.end_stops)



LATER_FIELDS = ("thinking_budget", "probe_every", "probe_agreement", "particle_temperature")
# Scores are clipped to [1e-7, 1 - 1e-7], so logits lie within ±16.2: at 1000 the weights of
# any two particles differ by at most 3.3 %, as good as uniform; a larger one means nothing more
MAX_PARTICLE_TEMPERATURE = 1000.0

# The sampling each reasoning family's model card recommends, as named presets (``--sampling``)
# rather than defaults: DeepSeek-R1 and its distills "temperature 0.5-0.7 (0.6 recommended),
# top-p 0.95"; Qwen3 thinking 0.6 / 0.95 and non-thinking 0.7 / 0.8 (its top-k 20 is not a
# ttscale setting); QwQ-32B 0.6 / 0.95.
SAMPLING_PRESETS: dict[str, dict[str, float]] = {
    "r1": {"temperature": 0.6, "top_p": 0.95},
    "qwen3-thinking": {"temperature": 0.6, "top_p": 0.95},
    "qwen3": {"temperature": 0.7, "top_p": 0.8},
    "qwq": {"temperature": 0.6, "top_p": 0.95},
}
