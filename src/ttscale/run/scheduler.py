"""Many problems' searches at once, their engine calls batched together.

Test-time scaling is generation-bound, and one problem's search keeps an engine busy only in
bursts: a beam round waits for its slowest sample, then scores, then starts the next round.
Running many problems' searches as asyncio tasks keeps the engine full:

* the llama.cpp engine batches every pending call itself (continuous batching: each caller's
  samples join the running batch);
* an HTTP engine keeps at most ``concurrency`` requests in flight, so a vLLM or SGLang server's
  own continuous batching stays full without an unbounded queue;
* engines and scorers that batch only within one call (transformers) get a
  :class:`Coalescer`: calls that arrive while one is being computed go out together as the
  next batch.

No search code changes for any of this: searches call the engine as before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ttscale.engines.base import Continuation, ModelInfo, Policy
from ttscale.errors import ConfigError
from ttscale.rewards.base import ScoreBatch, Scorer
from ttscale.steps import Step

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
Request = TypeVar("Request")
Reply = TypeVar("Reply")


@dataclass(frozen=True)
class Finished(Generic[Item, Result]):
    """One item's outcome: its result, or the error that ended it (then ``result`` is None)."""

    item: Item
    result: Result | None
    error: BaseException | None = None


async def solve_concurrently(
    items: Sequence[Item],
    solve: Callable[[Item], Awaitable[Result]],
    limit: int,
) -> AsyncIterator[Finished[Item, Result]]:
    """Run ``solve`` on every item, at most ``limit`` at once, yielding each outcome as it
    finishes. An item whose ``solve`` raises yields its error; the others go on. Items start
    in order, so a resumed run picks up where the first left off."""
    if limit < 1:
        raise ConfigError(f"the number of problems run at once must be at least 1, got {limit}")
    pending = iter(items)
    running: dict[asyncio.Task, Item] = {}

    def start_next() -> None:
        for item in pending:
            running[asyncio.ensure_future(solve(item))] = item
            return

    for _ in range(limit):
        start_next()
    try:
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: list(running).index(t)):
                item = running.pop(task)
                start_next()
                error = task.exception()
                if error is not None:
                    if not isinstance(error, Exception):  # KeyboardInterrupt and the like
                        raise error
                    yield Finished(item, None, error)
                else:
                    yield Finished(item, task.result())
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


class Coalescer(Generic[Request, Reply]):
    """Dynamic batching for a batch function: a call waits while a batch is being computed,
    then goes out with every call that arrived meanwhile.

    ``run_batch`` answers a list of requests with one reply each, in order. If it raises, each
    request of that batch is retried alone, so a bad request fails only its own caller."""

    def __init__(self, run_batch: Callable[[list[Request]], Awaitable[list[Reply]]]) -> None:
        self._run_batch = run_batch
        self._pending: list[tuple[Request, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.batches = 0  # how many batches went out (for tests and benchmarks)

    async def __call__(self, request: Request) -> Reply:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let every search that is ready add its call first
            batch = [(r, f) for r, f in self._pending if not f.cancelled()]
            self._pending = []
            if not batch:
                continue
            self.batches += 1
            try:
                replies = await self._run_batch([r for r, _ in batch])
                outcomes: list[tuple[Any, BaseException | None]] = [(r, None) for r in replies]
            except Exception as error:
                if len(batch) == 1:
                    outcomes = [(None, error)]
                else:
                    outcomes = [await self._alone(r) for r, _ in batch]
            except BaseException as error:  # a cancellation, an interrupt: no caller may wait
                self._abandon([f for _, f in batch] + [f for _, f in self._pending], error)
                self._pending = []
                if isinstance(error, asyncio.CancelledError):
                    raise
                return  # the callers raise it: this worker is no one's to read
            for (_, future), (reply, error) in zip(batch, outcomes, strict=True):
                if future.cancelled():
                    continue
                if error is None:
                    future.set_result(reply)
                else:
                    future.set_exception(error)

    @staticmethod
    def _abandon(futures: list[asyncio.Future], error: BaseException) -> None:
        """Wake every caller of a batch that will not be answered, with ``error``."""
        for future in futures:
            if future.done():
                continue
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)

    async def _alone(self, request: Request) -> tuple[Any, BaseException | None]:
        try:
            [reply] = await self._run_batch([request])
            return reply, None
        except Exception as error:
            return None, error


@dataclass(frozen=True)
class _ExtendRequest:
    prefixes: tuple[str, ...]
    n: int
    stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    first_sample: int

    @property
    def knobs(self) -> tuple:
        return (self.n, self.stop, self.max_tokens, self.temperature, self.top_p, self.seed,
                self.first_sample)


class CoalescedPolicy:
    """An engine that batches only within a call, with concurrent calls merged: calls with the
    same knobs become one call over all their prefixes. Each sample is drawn from its own
    stream (seed, prefix, index), so a merged call returns what the separate calls would."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.calls = Coalescer(self._run)

    @property
    def info(self) -> ModelInfo:
        return self.policy.info

    def __getattr__(self, name: str) -> Any:  # next_token_logprobs, clear_cache, ...
        return getattr(self.policy, name)

    async def extend(self, prefixes: Sequence[str], n: int, stop: Sequence[str],
                     max_tokens: int, temperature: float, top_p: float, seed: int,
                     first_sample: int = 0) -> list[list[Continuation]]:
        if isinstance(prefixes, str):
            raise TypeError("prefixes must be a list of strings, not one string")
        if not prefixes:
            return []
        return await self.calls(_ExtendRequest(tuple(prefixes), n, tuple(stop), max_tokens,
                                               temperature, top_p, seed, first_sample))

    async def _run(self, requests: list[_ExtendRequest]) -> list[list[list[Continuation]]]:
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.knobs, []).append(index)
        replies: list[Any] = [None] * len(requests)
        for members in groups.values():
            first = requests[members[0]]
            prefixes = [p for i in members for p in requests[i].prefixes]
            rows = await self.policy.extend(prefixes, first.n, list(first.stop),
                                            first.max_tokens, first.temperature, first.top_p,
                                            first.seed, first_sample=first.first_sample)
            at = 0
            for i in members:
                replies[i] = rows[at:at + len(requests[i].prefixes)]
                at += len(requests[i].prefixes)
        return replies

    async def close(self) -> None:
        await self.policy.close()


class CoalescedScorer:
    """A scorer whose ``score_many`` scores several problems' solutions in one set of forward
    passes, with concurrent ``score`` calls merged into it."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.calls = Coalescer(self._run)

    def __getattr__(self, name: str) -> Any:  # name, pointwise, parameters, close, ...
        return getattr(self.scorer, name)

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return await self.calls((problem, solutions))

    async def _run(self, requests: list[tuple[str, Sequence[Sequence[Step]]]]
                   ) -> list[ScoreBatch]:
        return await self.scorer.score_many(requests)  # type: ignore[attr-defined]


def batch_across_calls(policy: Policy) -> Policy:
    """The policy, wrapped so that concurrent calls batch together when it does not do that
    itself (engines that do say so with ``batches_across_calls = True``)."""
    if getattr(policy, "batches_across_calls", False) or isinstance(policy, CoalescedPolicy):
        return policy
    return CoalescedPolicy(policy)  # type: ignore[return-value]


def batch_scorer_across_calls(scorer: Scorer | None) -> Scorer | None:
    if scorer is None or not hasattr(scorer, "score_many") or isinstance(scorer, CoalescedScorer):
        return scorer
    return CoalescedScorer(scorer)  # type: ignore[return-value]
