"""The scheduler: many problems at once within a bound, failures kept to their own problem,
concurrent calls batched — on the embedded model where an engine is involved."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from ttscale.engines.llama_cpp import LlamaCppEngine
from ttscale.errors import ContextLengthError
from ttscale.prompts import PromptFormat
from ttscale.records import read_records
from ttscale.rewards import load_scorer
from ttscale.run.runner import DatasetSelection, RunConfig, run
from ttscale.run.scheduler import CoalescedPolicy, Coalescer, solve_concurrently
from ttscale.settings import SearchSettings

pytest.importorskip("llama_cpp")

THREADS = 1
QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A train travels 60 km in 1.5 hours. What is its average speed?",
    "Sara reads 12 pages a day. How many pages does she read in a week?",
    "A box holds 6 eggs. How many boxes are needed for 40 eggs?",
    "Ben had 20 dollars and spent 7. How much does he have left?",
    "A rectangle is 4 m by 9 m. What is its area?",
]


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    policy = LlamaCppEngine(n_ctx=8192, n_threads=THREADS)
    yield policy
    policy.free()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    fewshot = PromptFormat()
    return [fewshot.render(q) for q in QUESTIONS]


# -- the bound and the failures ----------------------------------------------------------------
def test_never_more_problems_at_once_than_the_bound_and_failures_stay_their_own() -> None:
    in_flight = peak = 0

    async def solve(k: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01 * (k % 3))
            if k == 4:
                raise ValueError("problem 4 is broken")
            return k * k
        finally:
            in_flight -= 1

    async def go():
        return [o async for o in solve_concurrently(range(10), solve, 3)]

    outcomes = asyncio.run(go())
    assert peak == 3 and in_flight == 0
    assert sorted(o.item for o in outcomes) == list(range(10))  # each exactly once
    failed = [o for o in outcomes if o.error is not None]
    assert [(o.item, str(o.error)) for o in failed] == [(4, "problem 4 is broken")]
    assert {o.item: o.result for o in outcomes if o.error is None} == {
        k: k * k for k in range(10) if k != 4}


def test_a_bound_below_one_is_refused() -> None:
    async def go():
        return [o async for o in solve_concurrently([1], asyncio.sleep, 0)]

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(go())


def test_coalescer_merges_waiting_calls_and_isolates_a_bad_one() -> None:
    batches: list[list[int]] = []

    async def square_all(requests: list[int]) -> list[int]:
        batches.append(list(requests))
        await asyncio.sleep(0.01)
        if any(r < 0 for r in requests):
            raise ValueError("negative")
        return [r * r for r in requests]

    coalescer = Coalescer(square_all)

    async def go():
        return await asyncio.gather(*(coalescer(r) for r in (1, 2, -3, 4)),
                                    return_exceptions=True)

    results = asyncio.run(go())
    assert results[:2] == [1, 4] and results[3] == 16
    assert isinstance(results[2], ValueError)
    # one merged batch, then (it failed) each request alone
    assert batches == [[1, 2, -3, 4], [1], [2], [-3], [4]]


class Interrupted(BaseException):
    """Not an Exception: what a batch is not retried for (an interrupt, an exit)."""


@pytest.mark.parametrize("raised", [Interrupted, asyncio.CancelledError])
def test_a_batch_that_ends_without_an_answer_wakes_every_caller(raised) -> None:
    # a caller left waiting for a reply that never comes would hang its whole run
    started = asyncio.Event()

    async def dies(requests: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(0.01)
        raise raised()

    coalescer = Coalescer(dies)

    async def go():
        first = [asyncio.ensure_future(coalescer(r)) for r in (1, 2)]
        await started.wait()
        late = asyncio.ensure_future(coalescer(3))  # waits for the next batch
        return await asyncio.wait_for(asyncio.gather(*first, late, return_exceptions=True),
                                      timeout=60)

    results = asyncio.run(go())
    assert len(results) == 3 and all(isinstance(r, raised) for r in results), results


# -- batching in the engine gives what one call at a time gives --------------------------------
def _one_by_one(engine, prompts, **knobs):
    rows = []
    for prompt in prompts:
        engine.clear_cache()
        rows.append(asyncio.run(engine.extend([prompt], **knobs))[0])
    return rows


def _all_at_once(policy, prompts, **knobs):
    async def go():
        return await asyncio.gather(*(policy.extend([p], **knobs) for p in prompts))

    return [reply[0] for reply in asyncio.run(go())]


GREEDY = dict(n=1, stop=["\n\n"], max_tokens=32, temperature=0.0, top_p=1.0, seed=0)
SAMPLED = dict(n=3, stop=["\n\n"], max_tokens=24, temperature=0.7, top_p=1.0, seed=5)


@pytest.mark.slow
@pytest.mark.parametrize("knobs", [GREEDY, SAMPLED], ids=["greedy", "seeded"])
def test_batched_calls_give_the_same_text_as_one_at_a_time(engine, prompts, knobs) -> None:
    alone = _one_by_one(engine, prompts, **knobs)
    engine.clear_cache()
    together = _all_at_once(engine, prompts, **knobs)
    assert [[c.text for c in row] for row in together] == [[c.text for c in row]
                                                           for row in alone]
    for a, b in zip(alone, together, strict=True):
        for x, y in zip(a, b, strict=True):
            assert np.allclose(x.token_logprobs, y.token_logprobs, atol=1e-4)
    # together, the few-shot examples the prompts share were computed once, not six times
    computed_alone = sum(c.computed_prompt_tokens for row in alone for c in row)
    computed_together = sum(c.computed_prompt_tokens for row in together for c in row)
    assert computed_together < computed_alone / 2


@pytest.mark.slow
def test_a_copied_kv_prefix_gives_the_log_probs_of_computing_it(engine, prompts) -> None:
    prompt = prompts[0]
    engine.clear_cache()
    [[first]] = asyncio.run(engine.extend([prompt], **{**GREEDY, "stop": ["\n"]}))
    step = prompt + first.text + "\n"
    # the step's prefix is served from the sample's own cache cells (copied sequence) ...
    [copied] = asyncio.run(engine.extend([step], **{**SAMPLED, "n": 4}))
    assert copied[0].cached_prompt_tokens >= len(engine.tokenize(prompt))
    # ... and computed from nothing after the cache is cleared
    engine.clear_cache()
    [fresh] = asyncio.run(engine.extend([step], **{**SAMPLED, "n": 4}))
    assert fresh[0].cached_prompt_tokens == 0
    assert [c.text for c in copied] == [c.text for c in fresh]
    for a, b in zip(copied, fresh, strict=True):
        assert np.allclose(a.token_logprobs, b.token_logprobs, atol=1e-5)


@pytest.mark.slow
def test_a_failing_call_among_merged_ones_fails_alone(engine, prompts) -> None:
    policy = CoalescedPolicy(engine)
    too_long = "apple " * (engine.n_ctx + 10)

    async def go():
        return await asyncio.gather(*(policy.extend([p], **GREEDY) for p in
                                      [prompts[0], too_long, prompts[1]]),
                                    return_exceptions=True)

    first, bad, third = asyncio.run(go())
    assert isinstance(bad, ContextLengthError)
    alone = _one_by_one(engine, [prompts[0], prompts[1]], **GREEDY)
    assert [first[0][0].text, third[0][0].text] == [alone[0][0].text, alone[1][0].text]


# -- the runner: problems at once, a failing one reported, the rest saved ----------------------
SMALL = SearchSettings(max_step_tokens=40, max_solution_tokens=120, max_depth=3, width=2)


@pytest.mark.slow
def test_run_saves_other_problems_when_one_fails(engine, tmp_path) -> None:
    data = tmp_path / "mixed.jsonl"
    rows = [{"id": f"q{k}", "problem": q, "answer": "1"} for k, q in enumerate(QUESTIONS[:3])]
    rows[1]["problem"] = "What is " + "one plus " * 5000 + "one?"  # longer than the cache
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = RunConfig(dataset=DatasetSelection(str(data)), methods=("bon", "beam"),
                       budgets=(2,), scorer="confidence", settings=SMALL)

    def go():
        return asyncio.run(run(config, engine, load_scorer("confidence"), tmp_path / "run",
                               PromptFormat(), parallel=3))

    outcome = go()
    assert [f.problem_id for f in outcome.failures] == ["q1"]
    assert "does not fit" in outcome.failures[0].message
    saved = read_records(tmp_path / "run" / "records.jsonl").records
    assert sorted(r["key"] for r in saved) == sorted(
        f"{p}|{m}|2" for p in ("q0", "q2") for m in ("bon", "beam"))
    again = go()  # a rerun tries the failed problem only
    assert again.new_records == 0 and [f.problem_id for f in again.failures] == ["q1"]


@pytest.mark.slow
def test_a_parallel_run_resumes_with_every_record_once(engine, tmp_path) -> None:
    config = RunConfig(dataset=DatasetSelection("gsm8k", limit=4), methods=("bon", "beam"),
                       budgets=(4,), scorer="confidence", settings=replace(SMALL, width=2))
    partial = replace(config, dataset=DatasetSelection("gsm8k", limit=2))

    def go(cfg):
        return asyncio.run(run(cfg, engine, load_scorer("confidence"), tmp_path,
                               PromptFormat(), parallel=3))

    first = go(partial)
    assert first.new_records == 4
    rest = go(config)  # the first two problems are done: only the other two are searched
    assert rest.new_records == 4 and not rest.failures
    keys = [r["key"] for r in read_records(tmp_path / "records.jsonl").records]
    assert sorted(keys) == sorted(f"gsm8k-test-{k:04d}|{m}|4" for k in range(4)
                                  for m in ("bon", "beam"))
