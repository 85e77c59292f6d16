"""The LLM-as-judge scorer and the engines' next-token log-probabilities, on the embedded
SmolLM2-135M (in process through llama.cpp, and over HTTP through llama-cpp-python's server).

What the 135M model makes of the judge prompt: little. On the Tom-and-pencils step below it
gives P(yes) = 0.42 to the right "24 - 5 = 19" and 0.45 to the wrong "24 - 5 = 17" (and 0.77
to the shared, right, step 1), on one machine; the numbers move with the CPU's kernels. So the
tests check the plumbing, not the verdicts.

Numerics: on this 4-bit model llama.cpp's log-probabilities move by a tenth of a nat or more
with anything that changes the rounding: the CPU's SIMD kernels, how a prompt's tokens are
split between decode calls, flash attention on or off. The engine's decode loop makes every
call 2 to 16 rows, which llama.cpp computes alike whatever shares the call, so in process a
prompt scored alone, in company, from cached cells or by another engine gives the same numbers
to the bit (asserted below), on any CPU. The HTTP server runs the same GGUF with
llama-cpp-python's default ``flash_attn=False`` and evaluates each prompt whole, against flash
attention on ``auto`` (on for the CPU) in process: other kernels, whose log-probabilities differ
by an amount that depends on the machine (0.02 to 0.23 nats for these candidates here, 0.37 for
" No" at P = 0.007 elsewhere). So over HTTP only what such a gap cannot change is compared: the
order of two candidates more than ``CLEAR`` apart."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence

import pytest

import test_engine_http  # for its server fixture
from ttscale.compute import TokenCount
from ttscale.engines.base import Continuation, NextTokenLogprobs, NextTokenScoring
from ttscale.engines.llama_cpp import LlamaCppEngine
from ttscale.engines.openai_http import OpenAICompletionsEngine
from ttscale.engines.openai_responses import next_token_from_response
from ttscale.errors import ConfigError, ContextLengthError, EngineError
from ttscale.rewards.base import ScoreBatch, Scorer, check_scores
from ttscale.rewards.judge import NO, YES, LLMJudgeScorer, yes_probability
from ttscale.steps import Step

pytest.importorskip("llama_cpp")

server_url = test_engine_http.server_url  # a llama-cpp-python server on the embedded model

THREADS = 1  # llama.cpp's threads spin: one is fastest on a small shared machine
PROBLEM = ("Tom has 3 boxes with 8 pencils in each box. He gives 5 pencils to his friend. "
           "How many pencils does Tom have now?")
RIGHT = [Step("Step 1: Tom has 3 * 8 = 24 pencils."),
         Step("Step 2: After giving away 5, he has 24 - 5 = 19 pencils."),
         Step("The answer is \\boxed{19}.")]
WRONG = [RIGHT[0], Step("Step 2: After giving away 5, he has 24 - 5 = 17 pencils."),
         Step("The answer is \\boxed{17}.")]
POLICY_PROMPT = ("Problem: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
                 "Solution:\nStep 1:")
CANDIDATES = [*YES, *NO]
# nats: two candidates this far apart in process keep their order over HTTP, whose
# log-probabilities differ by at most ~0.4 (module doc), so a gap moves by at most ~0.8
CLEAR = 2.0


def run(coroutine):
    return asyncio.run(coroutine)


def next_tokens(engine, prefixes: Sequence[str],
                candidates: Sequence[str] = CANDIDATES) -> list[NextTokenLogprobs]:
    async def go() -> list[NextTokenLogprobs]:
        try:
            return await engine.next_token_logprobs(prefixes, candidates)
        finally:
            if isinstance(engine, OpenAICompletionsEngine):
                await engine.close()

    return run(go())


def common_length(lists: Sequence[Sequence[int]]) -> int:
    length = min(map(len, lists))
    for i in range(length):
        if len({tokens[i] for tokens in lists}) > 1:
            return i
    return length


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    policy = LlamaCppEngine(n_ctx=4096, n_threads=THREADS)
    yield policy
    policy.free()


@pytest.fixture(scope="module")
def judge(engine: LlamaCppEngine) -> LLMJudgeScorer:
    return LLMJudgeScorer(engine)


@pytest.fixture(scope="module")
def judge_prompts(judge: LLMJudgeScorer) -> list[str]:
    """Steps 1..3 of the right solution, then step 2 of the wrong one."""
    return [*(judge.prompt(PROBLEM, RIGHT, k) for k in (1, 2, 3)), judge.prompt(PROBLEM, WRONG, 2)]


# -- the prompt --------------------------------------------------------------------------------
def test_candidates_are_single_distinct_tokens(engine: LlamaCppEngine) -> None:
    ids = [engine.tokenize(c, add_bos=False) for c in CANDIDATES]
    assert all(len(tokens) == 1 for tokens in ids)
    assert len({tokens[0] for tokens in ids}) == len(CANDIDATES)


def test_prompt_for_a_three_step_solution(judge: LLMJudgeScorer) -> None:
    # labels the policy wrote ("Step 1:") are replaced, missing ones added; braces stay
    steps = [Step("Step 1: Tom has 3 * 8 = 24 pencils.\n"), Step(" 24 - 5 = 19 {k}"),
             Step("The answer is \\boxed{19}.")]
    expected = """\
Decide whether each step of a solution is correct. A step is correct when its reasoning and \
its arithmetic are both right.

Problem: A farmer has 12 cows. Each cow gives 9 liters of milk a day. How many liters of milk \
do the cows give in 2 days?
Step 1: In one day the cows give 12 * 9 = 108 liters of milk.
Is step 1 correct (yes or no)? yes
Step 2: In 2 days they give 108 * 2 = 216 liters.
Is step 2 correct (yes or no)? yes

Problem: Lisa buys 4 notebooks at $3 each and a pen for $2. How much does she spend?
Step 1: The notebooks cost 4 * 3 = $12.
Is step 1 correct (yes or no)? yes
Step 2: In all she spends 12 + 2 = $16.
Is step 2 correct (yes or no)? no

Problem: Tom has {problem} pencils.
Step 1: Tom has 3 * 8 = 24 pencils.
Is step 1 correct (yes or no)? yes
Step 2: 24 - 5 = 19 {k}
Is step 2 correct (yes or no)? yes
Step 3: The answer is \\boxed{19}.
Is step 3 correct (yes or no)?"""
    assert judge.prompt(" Tom has {problem} pencils.\n", steps, 3) == expected
    # the prompt for step k begins the prompt for step k + 1
    assert judge.prompt(" Tom has {problem} pencils.\n", steps, 2) + " yes\n" in expected
    assert judge.prompt("P", steps, 1).endswith(
        "Problem: P\nStep 1: Tom has 3 * 8 = 24 pencils.\nIs step 1 correct (yes or no)?")


# -- the llama.cpp engine's next-token log-probabilities ---------------------------------------
def test_agrees_with_greedy_extend(engine: LlamaCppEngine, judge_prompts: list[str]) -> None:
    prefixes = [judge_prompts[1], POLICY_PROMPT]
    rows = run(engine.extend(prefixes, 1, [], 1, 0.0, 1.0, 0))
    greedy: list[Continuation] = [row[0] for row in rows]
    assert all(c.text and c.token_logprobs for c in greedy)
    candidates = [*CANDIDATES, *(c.text for c in greedy), " the", " apples", "\n"]
    for c, answer in zip(greedy, next_tokens(engine, prefixes, candidates), strict=True):
        assert max(answer.logprobs, key=answer.logprobs.get) == c.text
        assert answer.logprobs[c.text] == pytest.approx(c.token_logprobs[0], abs=1e-4)
        assert all(-math.inf < lp <= 0 for lp in answer.logprobs.values())
        # at most one unit of probability among distinct tokens
        assert sum(math.exp(lp) for lp in answer.logprobs.values()) <= 1 + 1e-6
        assert answer.prompt_tokens == c.prompt_tokens


def same_answers(a: NextTokenLogprobs, b: NextTokenLogprobs) -> None:
    """The same prompt length and, bit for bit, the same log-probabilities."""
    assert a.prompt_tokens == b.prompt_tokens
    assert a.logprobs == b.logprobs


def test_batched_equals_one_by_one(engine: LlamaCppEngine, judge_prompts: list[str]) -> None:
    together = next_tokens(engine, judge_prompts)
    alone = [next_tokens(engine, [p])[0] for p in judge_prompts]
    for a, b, prompt in zip(together, alone, judge_prompts, strict=True):
        assert a.prompt_tokens == len(engine.tokenize(prompt))
        same_answers(a, b)
    # the same call again: the same numbers
    for a, b in zip(together, next_tokens(engine, judge_prompts), strict=True):
        same_answers(a, b)


def test_shared_prefix_is_computed_once_and_kept(engine: LlamaCppEngine,
                                                 judge_prompts: list[str]) -> None:
    lists = [engine.tokenize(p) for p in judge_prompts]
    shared = common_length(lists)
    assert shared > 200  # the judge instruction, its examples and the problem
    # the right solution's three prompts form one chain: each begins the next
    assert lists[1][:len(lists[0])] == lists[0] and lists[2][:len(lists[1])] == lists[1]
    engine.clear_cache()
    first = next_tokens(engine, judge_prompts)
    # each chain member computes only what follows the one before it (a prompt that would
    # share much with one being computed waits for it); the wrong solution's step-2 prompt
    # shares the right one's up to the digit that differs, and computes only the rest
    assert [a.prompt_tokens - a.cached_prompt_tokens for a in first] == [
        len(lists[0]), len(lists[1]) - len(lists[0]), len(lists[2]) - len(lists[1]),
        len(lists[3]) - common_length([lists[1], lists[3]])]
    # the same prompts again: all cached but the last token, whose logits are read
    again = next_tokens(engine, judge_prompts)
    assert [a.cached_prompt_tokens for a in again] == [len(t) - 1 for t in lists]
    for a, b in zip(first, again, strict=True):
        same_answers(a, b)  # cached or computed, bit for bit the same numbers


@pytest.mark.slow
def test_waves_when_slots_or_cache_run_short(engine: LlamaCppEngine,
                                            judge_prompts: list[str]) -> None:
    # prompts that share the judge instruction, each with a long body of its own
    head = judge_prompts[0][:judge_prompts[0].index("Problem: Tom")]
    long_prompts = [head + f"Problem: Box {i} " + " ".join(
        f"and box {j} hold {i * j + 3} marbles" for j in range(24)) + "." for i in range(2)]
    # three prompts, none the beginning of another (those would share one pass)
    distinct = [judge_prompts[1], judge_prompts[3],
                judge_prompts[1].replace("= 19 pencils", "= 21 pencils")]
    # two sequences for prompts (the third is the decode loop's scratch)
    small = LlamaCppEngine(n_ctx=512, n_seq_max=3, n_threads=THREADS)
    try:
        assert small.n_seq_max == 3 and small.n_ctx == 512
        waved = {}
        for name, prompts in (("slots", distinct), ("cells", long_prompts)):
            lists = [small.tokenize(p) for p in prompts]
            shared, lengths = common_length(lists), sorted(len(t) for t in lists)
            if name == "slots":  # more prompts than slots, all of them fit the cache at once
                assert len(prompts) > 2 and sum(lengths) - (len(lengths) - 1) * shared < 512
            else:  # two slots, but no two prompts fit the cache together
                assert lengths[0] + lengths[1] - shared > 512 >= lengths[-1]
            waved[name] = next_tokens(small, prompts)
            # what an earlier prompt computed is charged to it alone, whatever the waves:
            # each later prompt computes what follows its longest start in common with one
            assert [a.prompt_tokens - a.cached_prompt_tokens for a in waved[name][1:]] == [
                len(t) - max(common_length([t, u]) for u in lists[:i])
                for i, t in enumerate(lists) if i]
    finally:
        small.free()
    for name, prompts in (("slots", distinct), ("cells", long_prompts)):
        for a, b in zip(waved[name], next_tokens(engine, prompts), strict=True):
            same_answers(a, b)  # another engine, other cells: the same numbers


def test_errors_leave_the_engine_usable(engine: LlamaCppEngine) -> None:
    before = next_tokens(engine, [POLICY_PROMPT])
    with pytest.raises(EngineError, match="empty prefix"):
        next_tokens(engine, [POLICY_PROMPT, ""])
    with pytest.raises(ContextLengthError, match="does not fit"):
        next_tokens(engine, [POLICY_PROMPT, "apple " * (engine.n_ctx + 8)])
    with pytest.raises(ValueError, match="no tokens"):
        next_tokens(engine, [POLICY_PROMPT], [" yes", ""])
    with pytest.raises(TypeError, match="list of strings|lists of strings"):
        next_tokens(engine, POLICY_PROMPT)
    assert next_tokens(engine, []) == []
    after = next_tokens(engine, [POLICY_PROMPT])
    assert after[0].logprobs == pytest.approx(before[0].logprobs, abs=1e-4)


# -- the scorer --------------------------------------------------------------------------------
def test_scores_one_per_step_with_the_tokens_computed(engine: LlamaCppEngine,
                                                      judge: LLMJudgeScorer) -> None:
    assert isinstance(judge, Scorer) and isinstance(engine, NextTokenScoring)
    assert judge.name == "judge" and judge.pointwise
    assert judge.parameters == engine.info.parameters
    solutions = [RIGHT, WRONG[:2], []]
    batch = check_scores(run(judge.score(PROBLEM, solutions)), solutions, judge.name)
    assert [len(s) for s in batch.scores] == [3, 2, 0]
    assert all(0 <= s <= 1 for row in batch.scores for s in row)
    prompts = [judge.prompt(PROBLEM, steps, k)
               for steps in solutions for k in range(1, len(steps) + 1)]
    assert batch.tokens.prompt == sum(len(engine.tokenize(p)) for p in prompts)
    assert batch.tokens.generated == 0
    assert 0 < batch.tokens.cached_prompt < batch.tokens.prompt
    assert run(judge.score(PROBLEM, [[], []])) == ScoreBatch([[], []])
    assert run(judge.score(PROBLEM, [])).tokens == TokenCount()


def test_right_and_wrong_step_scores_come_from_the_logprobs(engine: LlamaCppEngine,
                                                            judge: LLMJudgeScorer) -> None:
    solutions = [RIGHT[:2], WRONG[:2]]
    batch = run(judge.score(PROBLEM, solutions))
    # the very prompts the scorer sent, read again
    prompts = [judge.prompt(PROBLEM, steps, k) for steps in solutions for k in (1, 2)]
    answers = iter(next_tokens(engine, prompts))
    for row in batch.scores:
        for score in row:
            p = {c: math.exp(lp) for c, lp in next(answers).logprobs.items()}
            expected = (p[" yes"] + p[" Yes"]) / (p[" yes"] + p[" Yes"] + p[" no"] + p[" No"])
            assert score == pytest.approx(expected, abs=1e-6)
    # step 1 is the same in both solutions: so is its prompt, and its score to the bit
    assert batch.scores[0][0] == batch.scores[1][0]
    # step 2 is not (whether the 135M model tells which is right is not asserted): each is
    # scored from its own prompt
    assert batch.scores[0][1] != batch.scores[1][1]


def test_yes_probability() -> None:
    inf = math.inf
    lp = {" yes": math.log(0.2), " Yes": math.log(0.1), " no": math.log(0.3), " No": -inf}
    assert yes_probability(lp, YES, NO) == pytest.approx(0.5)
    assert yes_probability({**lp, " yes": -inf, " Yes": -inf}, YES, NO) == 0.0
    assert yes_probability({**lp, " no": -inf}, YES, NO) == 1.0
    assert yes_probability({c: -inf for c in CANDIDATES}, YES, NO) == 0.5
    assert yes_probability({" yes": -1000.0, " no": 0.0}, [" yes"], [" no"]) < 1e-300


def test_engine_without_next_token_scoring_is_refused() -> None:
    with pytest.raises(ConfigError, match="next-token"):
        LLMJudgeScorer(object())


# -- over HTTP ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_http_agrees_with_the_in_process_engine(server_url: str, engine: LlamaCppEngine,
                                                judge_prompts: list[str]) -> None:
    prefixes = [judge_prompts[1], judge_prompts[3]]
    candidates = [*CANDIDATES, " pencils", " zebra"]
    local = next_tokens(engine, prefixes, candidates)
    remote = next_tokens(OpenAICompletionsEngine(server_url, concurrency=2,
                                                 timeout=test_engine_http.REQUEST_LIMIT_S),
                         prefixes, candidates)
    for a, b in zip(local, remote, strict=True):
        assert b.prompt_tokens == a.prompt_tokens
        assert b.cached_prompt_tokens == 0  # this server does not report cached tokens
        # outside the server's top 20: unseen there, however likely it is here
        assert a.logprobs[" zebra"] > -math.inf and b.logprobs[" zebra"] == -math.inf
        assert a.logprobs[" pencils"] > -math.inf and b.logprobs[" pencils"] == -math.inf
        # the judge's candidates are in it (the 20th token is ~3 nats below the least of them)
        assert all(b.logprobs[c] > -math.inf for c in CANDIDATES)
        # the same model: candidates far apart in process come in the same order over HTTP
        # (" yes" and " no", a few tenths apart, may swap)
        pairs = [(c, d) for c in CANDIDATES for d in CANDIDATES
                 if a.logprobs[c] - a.logprobs[d] > CLEAR]
        assert len(pairs) >= 4  # " yes" and " no" each ahead of " Yes" and " No" by ~7 nats
        assert all(b.logprobs[c] > b.logprobs[d] for c, d in pairs)


def test_http_top_k_is_a_setting(server_url: str, judge_prompts: list[str]) -> None:
    # on this prompt the model's two most likely next tokens are " no" and " yes", ~8 nats
    # ahead of the third: far more than any CPU's kernels move them
    remote_engine = OpenAICompletionsEngine(server_url, top_logprobs=2,
                                            timeout=test_engine_http.REQUEST_LIMIT_S)
    assert remote_engine.top_logprobs == 2 and OpenAICompletionsEngine.top_logprobs == 20
    [remote] = next_tokens(remote_engine, [judge_prompts[1]])
    assert {c for c in CANDIDATES if remote.logprobs[c] > -math.inf} == {" no", " yes"}
    with pytest.raises(ConfigError, match="top_logprobs"):
        OpenAICompletionsEngine(server_url, top_logprobs=0)


def test_http_read_out_of_a_response() -> None:
    import openai

    def response(logprobs, usage):
        return openai.types.Completion.construct(
            id="c", object="text_completion", created=0, model="m", usage=usage,
            choices=[{"index": 0, "text": " yes", "finish_reason": "length",
                      "logprobs": logprobs}])

    usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11,
             "prompt_tokens_details": {"cached_tokens": 8}}
    listing = {"tokens": [" yes"], "token_logprobs": [-0.1],
               "top_logprobs": [{" yes": -0.1, " no": -2.5, "yes": -4.0}]}
    answer = next_token_from_response(response(listing, usage), [" yes", " no", " No"])
    assert answer == NextTokenLogprobs({" yes": -0.1, " no": -2.5, " No": -math.inf}, 10, 8)
    with pytest.raises(EngineError, match="top_logprobs"):
        next_token_from_response(response(None, usage), [" yes"])
