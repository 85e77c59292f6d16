"""An LLM-as-judge step scorer: the policy model itself (or any engine) asked, step by step,
whether the last step of a partial solution is correct.

For step ``k`` of a solution the prompt is a short few-shot judge instruction
(``prompt_files/judge_fewshot.txt``), the problem, then steps ``1..k``, each followed by the
question "Is step i correct (yes or no)?" — answered "yes" for the earlier steps, left open
for step ``k``. The score is P(yes) / (P(yes) + P(no)) read off the next-token distribution,
the case variants summed.

Earlier steps stand as accepted (as in RLHFlow's PRM format, where every earlier step is
answered "+"): a search only asks about a step whose earlier steps it kept, and it makes the
prompt for step ``k`` the beginning of the prompt for step ``k + 1``, so an engine that
shares such prefixes reads a whole solution in one pass. Every prompt of one ``score`` call
goes to the engine in one ``next_token_logprobs`` call; the instruction and the problem,
common to them all, are computed once."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ttscale.compute import TokenCount
from ttscale.engines.base import NextTokenScoring
from ttscale.errors import ConfigError
from ttscale.prompts import prompt_file
from ttscale.rewards.base import ScoreBatch
from ttscale.steps import Step

NEUTRAL_SCORE = 0.5
# single tokens in SmolLM2's (and most BPE) vocabularies; the prompt ends in "?" so the answer
# comes with a leading space
YES = (" yes", " Yes")
NO = (" no", " No")
TEMPLATE_FILE = "judge_fewshot.txt"
QUESTION = "Is step {i} correct (yes or no)?"
ACCEPTED = " yes"

_STEP_LABEL = re.compile(r"^\s*step\s*\d+\s*[:.]\s*", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{(problem|steps|k)\}")


def render_judge_prompt(template: str, problem: str, steps: Sequence[Step], k: int) -> str:
    """The judge prompt for step ``k`` (1-based): steps ``1..k``, each labelled ``Step i:``
    whether or not the policy wrote that label itself, each followed by its question; the
    earlier questions answered "yes"."""
    lines = []
    for i, step in enumerate(steps[:k], start=1):
        lines.append(f"Step {i}: {_STEP_LABEL.sub('', step.text).strip()}")
        lines.append(f"{QUESTION.format(i=i)}{ACCEPTED if i < k else ''}")
    values = {"problem": problem.strip(), "steps": "\n".join(lines), "k": str(k)}
    # one pass, so braces in the problem or a step (LaTeX) are never read as placeholders
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def yes_probability(logprobs: dict[str, float], yes: Sequence[str],
                    no: Sequence[str]) -> float:
    """P(yes) / (P(yes) + P(no)), each side summed over its spellings; neutral when the
    engine saw none of them."""
    log_yes = _logsumexp([logprobs[c] for c in yes])
    log_no = _logsumexp([logprobs[c] for c in no])
    if log_yes == log_no == -math.inf:
        return NEUTRAL_SCORE
    if log_no == -math.inf or log_yes == -math.inf:
        return 1.0 if log_no == -math.inf else 0.0
    return 1.0 / (1.0 + math.exp(min(log_no - log_yes, 700.0)))  # a logistic, overflow-safe


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class LLMJudgeScorer:
    """Scores each step by asking ``engine`` (e.g. the run's policy) whether it is correct.

    ``parameters`` is the engine's model size: the judge's prompt tokens are charged to the
    scorer at that size."""

    name = "judge"
    pointwise = True  # each step's prompt holds its own solution only

    def __init__(self, engine: object, *, yes: Sequence[str] = YES, no: Sequence[str] = NO,
                 template: str | None = None) -> None:
        if not isinstance(engine, NextTokenScoring):
            raise ConfigError(
                f"the judge scorer needs an engine that reads next-token log-probabilities; "
                f"{type(engine).__name__} does not (the llama.cpp, hf and openai engines do; or "
                "pick another scorer)")
        if not yes or not no:
            raise ConfigError("the judge scorer needs at least one yes and one no candidate")
        self.engine = engine
        self.yes, self.no = tuple(yes), tuple(no)
        self.template = (template if template is not None
                         else prompt_file(TEMPLATE_FILE)).rstrip()

    @property
    def parameters(self) -> int | None:
        return self.engine.info.parameters

    def prompt(self, problem: str, steps: Sequence[Step], k: int) -> str:
        return render_judge_prompt(self.template, problem, steps, k)

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        prompts = [self.prompt(problem, steps, k)
                   for steps in solutions for k in range(1, len(steps) + 1)]
        if not prompts:
            return ScoreBatch([[] for _ in solutions])
        answers = await self.engine.next_token_logprobs(prompts, [*self.yes, *self.no])
        flat = iter([yes_probability(a.logprobs, self.yes, self.no) for a in answers])
        scores = [[next(flat) for _ in steps] for steps in solutions]
        tokens = TokenCount(prompt=sum(a.prompt_tokens for a in answers),
                            cached_prompt=sum(a.cached_prompt_tokens for a in answers))
        return ScoreBatch(scores, tokens)
