"""What a request gets for the settings it does not send, and the most it may ask for. The search's
own defaults (temperature, top_p, seed, width, aggregations, particle temperature) are the
library's, read from :class:`ttscale.settings.SearchSettings`; the rest are the server's."""

from __future__ import annotations

from dataclasses import dataclass

from ttscale.planner.auto import AUTO
from ttscale.settings import SearchSettings


@dataclass(frozen=True)
class ServerDefaults:
    """What a request gets for the settings it does not send."""

    method: str = AUTO
    budget: int = 8
    width: int = SearchSettings.width
    prm: str = "confidence"
    max_tokens: int = 512  # per solution
    temperature: float = SearchSettings.temperature
    top_p: float = SearchSettings.top_p
    seed: int = SearchSettings.seed
    aggregation: str = SearchSettings.answer_aggregation
    step_aggregation: str = SearchSettings.step_aggregation
    particle_temperature: float = SearchSettings.particle_temperature


@dataclass(frozen=True)
class ServerLimits:
    """The most one request may ask for."""

    max_budget: int = 64
    max_tokens: int = 4096
    max_problem_chars: int = 32_000
