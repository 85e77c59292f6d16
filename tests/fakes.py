"""Test doubles for the policy and scorer protocols, shared by the search tests.

``ScriptedPolicy`` behaves like a real engine where search code can tell: it cuts text at the
first stop string, stops at ``max_tokens``, and reports consistent token counts, offsets and
log-probabilities. What it writes comes from a plain function ``(prefix, j, stop) -> (text,
finish_reason)``; ``Stepper`` is such a function that writes numbered steps whose text names
the path of sample indices that led to them, so a test can tell every node apart.

``ScriptedScorer`` scores a step by the ``[s=0.123]`` marker written in its text."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ttscale.compute import TokenCount
from ttscale.engines.base import Continuation, FinishReason, ModelInfo, validate_extend_args
from ttscale.rewards.base import ScoreBatch
from ttscale.steps import DEFAULT_STEP_DELIMITER, Step

Responder = Callable[[str, int, tuple[str, ...]], tuple[str, FinishReason]]

END = "<|end|>"  # the solution-ending stop string the tests use
PROMPT = "Problem: what is 3 + 4?\nSolution:\n"

_TOKEN = re.compile(r"\S+\s*")  # one token: a word and the whitespace after it


def tokenize(text: str) -> list[tuple[int, str]]:
    """``(offset, token)`` pairs; every token starts at a non-space character."""
    return [(m.start(), m.group()) for m in _TOKEN.finditer(text)]


def token_logprob(k: int) -> float:
    """The log-probability the fake policy reports for its ``k``-th generated token."""
    return -0.01 * (k + 1)


@dataclass
class ExtendCall:
    prefixes: tuple[str, ...]
    n: int
    stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    first_sample: int = 0
    replies: list[list[Continuation]] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.prefixes) * self.n


class ScriptedPolicy:
    """A policy engine answering from ``respond``; records every ``extend`` call."""

    def __init__(self, respond: Responder, *, parameters: int | None = 1000,
                 logprobs: bool = True) -> None:
        self.respond = respond
        self.parameters = parameters
        self.logprobs = logprobs
        self.calls: list[ExtendCall] = []
        self.closed = False

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="scripted", parameters=self.parameters)

    @property
    def continuations(self) -> list[Continuation]:
        return [c for call in self.calls for conts in call.replies for c in conts]

    async def extend(
        self,
        prefixes: Sequence[str],
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        first_sample: int = 0,
    ) -> list[list[Continuation]]:
        validate_extend_args(prefixes, n, max_tokens, temperature, top_p, first_sample)
        call = ExtendCall(tuple(prefixes), n, tuple(stop), max_tokens, temperature, top_p, seed,
                          first_sample)
        self.calls.append(call)
        for prefix in prefixes:
            call.replies.append([
                self._continue(prefix, *self.respond(prefix, j, call.stop), call.stop, max_tokens)
                for j in range(first_sample, first_sample + n)
            ])
        return call.replies

    def _continue(self, prefix: str, text: str, finish: FinishReason,
                  stop: tuple[str, ...], max_tokens: int) -> Continuation:
        stop_string = None
        hits = [(text.find(s), -len(s), s) for s in stop if s and s in text]
        if hits:
            cut, _, stop_string = min(hits)
            text, finish = text[:cut], "stop"
        tokens = tokenize(text)
        if len(tokens) > max_tokens:
            text = text[: tokens[max_tokens][0]]
            tokens = tokens[:max_tokens]
            finish, stop_string = "length", None
        # as a real engine: the token that matched a stop string, or the end-of-sequence
        # token, is generated but has no text, offset or log-prob
        untexted = 1 if finish in ("stop", "eos") and len(tokens) < max_tokens else 0
        return Continuation(
            text=text,
            finish_reason=finish,
            prompt_tokens=len(prefix.split()),
            cached_prompt_tokens=0,
            generated_tokens=len(tokens) + untexted,
            token_logprobs=(tuple(token_logprob(k) for k in range(len(tokens)))
                            if self.logprobs else None),
            token_offsets=tuple(offset for offset, _ in tokens) if self.logprobs else None,
            stop_string=stop_string,
        )

    async def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------------------------
# A deterministic step writer
# --------------------------------------------------------------------------------------------

Path = tuple[int, ...]
_PATH = re.compile(r"path=([0-9-]+)")
_SCORE = re.compile(r"\[s=([0-9.]+)\]")


def hashed_score(path: Path) -> float:
    """A fixed pseudo-random score in [0, 1] for a path."""
    digest = hashlib.sha256(repr(path).encode()).hexdigest()
    return round(int(digest[:8], 16) / 0xFFFFFFFF, 3)


def step_text(path: Path, score: float, answer: str | None = None) -> str:
    """The step the ``Stepper`` writes for ``path`` (its sample index at every depth)."""
    label = "-".join(map(str, path))
    text = f"Step {len(path)}: path={label} [s={score:.3f}]"
    return text + (f" so the answer is \\boxed{{{answer}}}" if answer is not None else "")


def path_of(text: str) -> Path:
    """The path a ``Stepper`` step names (its last one, for a text holding several steps)."""
    found = _PATH.findall(text)
    return tuple(int(part) for part in found[-1].split("-")) if found else ()


class Stepper:
    """A ``Responder`` writing a solution step by step.

    Continuing ``prefix`` (the prompt followed by steps, each ending in the delimiter), sample
    ``j`` writes the step at the next depth with path ``parent_path + (key(depth, j),)``, then
    the steps below it (as sample 0) until a step ``boxes``; that step writes
    ``\\boxed{answer}`` and is followed by ``tail`` (by default ``END`` and junk a stop must
    cut off). Each step's score, ``score(path)``, is written into its text as ``[s=...]``."""

    def __init__(
        self,
        prompt: str = PROMPT,
        *,
        answer_depth: int = 3,
        boxes: Callable[[Path], bool] | None = None,
        score: Callable[[Path], float] = hashed_score,
        answer: Callable[[Path], str] = lambda path: "7",
        key: Callable[[int, int], int] = lambda depth, j: j,
        delimiter: str = DEFAULT_STEP_DELIMITER,
        tail: str = END + " trailing text after the end",
        max_steps: int = 60,
    ) -> None:
        self.prompt = prompt
        self.boxes = boxes or (lambda path: len(path) >= answer_depth)
        self.score = score
        self.answer = answer
        self.key = key
        self.delimiter = delimiter
        self.tail = tail
        self.max_steps = max_steps

    def parent_path(self, prefix: str) -> Path:
        assert prefix.startswith(self.prompt), "a prefix must start with the prompt"
        steps = [s for s in prefix[len(self.prompt):].split(self.delimiter) if s.strip()]
        return path_of(steps[-1]) if steps else ()

    def __call__(self, prefix: str, j: int, stop: tuple[str, ...]) -> tuple[str, FinishReason]:
        path = self.parent_path(prefix)
        path = (*path, self.key(len(path) + 1, j))
        steps = []
        while True:
            done = self.boxes(path) or len(path) >= self.max_steps
            steps.append(step_text(path, self.score(path), self.answer(path) if done else None))
            if done:
                break
            path = (*path, 0)
        return self.delimiter.join(steps) + self.tail, "eos"


# --------------------------------------------------------------------------------------------
# Scorer
# --------------------------------------------------------------------------------------------


def marked_score(text: str, default: float = 0.5) -> float:
    """The last ``[s=...]`` marker in a step's text, else ``default``."""
    found = _SCORE.findall(text)
    return float(found[-1]) if found else default


@dataclass
class ScoreCall:
    problem: str
    solutions: list[list[str]]


class ScriptedScorer:
    """A pointwise scorer reading each step's score off its text; records every call.

    It charges one prompt token per word of the problem and of the steps it reads."""

    name = "scripted"
    pointwise = True

    def __init__(self, score: Callable[[str], float] = marked_score,
                 parameters: int | None = 0) -> None:
        self.step_score = score
        self._parameters = parameters
        self.calls: list[ScoreCall] = []
        self.charged: list[TokenCount] = []

    @property
    def parameters(self) -> int | None:
        return self._parameters

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        self.calls.append(ScoreCall(problem, [[s.text for s in steps] for steps in solutions]))
        words = sum(len(problem.split()) + sum(len(s.text.split()) for s in steps)
                    for steps in solutions)
        tokens = TokenCount(prompt=words)
        self.charged.append(tokens)
        return ScoreBatch([[self.step_score(s.text) for s in steps] for steps in solutions],
                          tokens)


# -- a search context over the scripted policy --------------------------------------------------
DELIM = "\n\n"  # the tests' step delimiter (the default)
PROBLEM = "what is 3 + 4?"


def make_ctx(policy, scorer=None, **settings):
    """A search context for ``PROMPT`` over ``policy`` (and ``scorer``); ``settings`` are
    SearchSettings fields, the solution-ending stop ``END`` by default."""
    from ttscale.compute import Ledger
    from ttscale.search.context import SearchContext
    from ttscale.settings import SearchSettings

    settings.setdefault("end_stops", (END,))
    return SearchContext(
        problem=PROBLEM, prompt=PROMPT, policy=policy, scorer=scorer,
        settings=SearchSettings(**settings),
        ledger=Ledger(policy.info.parameters, scorer.parameters if scorer else None))


def run(coro):
    return asyncio.run(coro)


# -- reading what a search did ------------------------------------------------------------------
def at_depth(tree, depth: int) -> list:
    return [n for n in tree.nodes if n.depth == depth]


def prefix_of(tree, node) -> str:
    """The policy's input that continues ``node``'s path (``PROMPT`` and ``DELIM`` steps)."""
    return PROMPT + "".join(n.step.text + DELIM for n in tree.path(node))


def requested(calls) -> Counter:
    """Samples requested per prefix over some engine calls."""
    counts: Counter = Counter()
    for call in calls:
        for prefix in call.prefixes:
            counts[prefix] += call.n
    return counts


def assert_ledger_charges_every_call(ledger, policy: ScriptedPolicy,
                                     scorer: ScriptedScorer) -> None:
    """The ledger holds every token of every policy and scorer call, counted apart from the
    engine's own report too: one token per word, + 1 for the stop or the end of sequence."""
    conts = policy.continuations
    assert ledger.policy == TokenCount(
        prompt=sum(c.prompt_tokens for c in conts),
        cached_prompt=sum(c.cached_prompt_tokens for c in conts),
        generated=sum(c.generated_tokens for c in conts))
    assert ledger.policy.generated == sum(len(tokenize(c.text)) + (c.finish_reason != "length")
                                          for c in conts)
    assert ledger.policy.prompt == sum(len(p.split()) * call.n
                                       for call in policy.calls for p in call.prefixes)
    assert ledger.policy_calls == len(policy.calls)
    assert ledger.scorer == TokenCount.total(scorer.charged)
    assert ledger.scorer_calls == len(scorer.calls)

