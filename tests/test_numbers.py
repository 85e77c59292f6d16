"""Numbers that are not numbers: NaN, infinities and out-of-range values from engines' log-probs
and from scorers are refused with an error that names where they came from, or read by the one
documented rule (-inf log-probs as the floor) — never silently turned into a valid score."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest

from fakes import ScriptedPolicy, ScriptedScorer, make_ctx, run
from reliability_log import log_case
from ttscale.datasets import load_dataset
from ttscale.engines.base import LOGPROB_FLOOR, Continuation, checked_logprobs
from ttscale.engines.openai_responses import continuation_from_response
from ttscale.engines.vllm_engine import continuation_from_output
from ttscale.errors import EngineError
from ttscale.prompts import PromptFormat
from ttscale.records import read_records
from ttscale.rewards.base import ScoreBatch, check_scores
from ttscale.rewards.confidence import step_confidence
from ttscale.run.runner import DatasetSelection, RunConfig
from ttscale.run.runner import run as run_problems
from ttscale.search.deepconf import lowest_group_confidence
from ttscale.settings import SearchSettings
from ttscale.steps import Step

NAN, INF = math.nan, math.inf


def _continuation(logprobs) -> Continuation:
    return Continuation(text="a b c", finish_reason="eos", prompt_tokens=3,
                        cached_prompt_tokens=0, generated_tokens=len(logprobs),
                        token_logprobs=tuple(logprobs), token_offsets=(0, 2, 4)[:len(logprobs)])


class TestLogprobRule:
    def test_minus_infinity_is_the_floor_and_rounding_above_zero_is_zero(self):
        assert checked_logprobs([-0.5, -INF, 4e-4, 0.0, -1e6]) == (
            -0.5, LOGPROB_FLOOR, 0.0, 0.0, LOGPROB_FLOOR)
        assert _continuation([-INF, -0.1]).token_logprobs == (LOGPROB_FLOOR, -0.1)
        log_case("numbers that are not numbers", "engine log-prob -inf, 4e-4", cases=2,
                 result="read as the floor -9999, as 0 (the documented rule)")

    @pytest.mark.parametrize("bad", [NAN, INF, 0.5])
    def test_nan_plus_infinity_and_positive_values_are_refused_naming_the_token(self, bad):
        with pytest.raises(EngineError, match=rf"token 2 the log-prob {bad}.*no log-prob"):
            checked_logprobs([-0.1, -0.2, bad])
        with pytest.raises(EngineError, match="token 1"):
            _continuation([-0.1, bad])
        log_case("numbers that are not numbers", f"engine log-prob {bad}",
                 result="refused: EngineError naming the token")

    def test_the_floor_is_the_lowest_confidence_not_a_neutral_one(self):
        step = Step(text="x", token_logprobs=(LOGPROB_FLOOR, -0.1))
        assert step_confidence(step) == 0.0
        assert step_confidence(Step(text="x", token_logprobs=None)) == 0.5  # no log-probs
        assert lowest_group_confidence([LOGPROB_FLOOR] + [-0.01] * 9) == pytest.approx(
            math.exp((LOGPROB_FLOOR - 0.09) / 10))

    def test_a_server_answer_with_nan_log_probs_is_refused(self):
        # JSON's NaN and Infinity, as Python's json module reads them from a faulty server
        for bad in (NAN, INF):
            response = SimpleNamespace(
                choices=[SimpleNamespace(text="a b", finish_reason="length",
                                         logprobs=SimpleNamespace(tokens=["a", " b"],
                                                                  token_logprobs=[-0.1, bad],
                                                                  text_offset=[7, 8]))],
                usage=None)
            with pytest.raises(EngineError, match="token 1"):
                continuation_from_response(response, [])

    def test_vllm_without_the_sampled_tokens_log_prob_is_refused(self):
        completion = SimpleNamespace(
            text="a b", token_ids=[1, 2], finish_reason="length", stop_reason=None,
            logprobs=[{1: SimpleNamespace(logprob=-0.1, decoded_token="a")},
                      {9: SimpleNamespace(logprob=-0.2, decoded_token=" c")}])
        output = SimpleNamespace(outputs=[completion], prompt_token_ids=[0], num_cached_tokens=0)
        with pytest.raises(EngineError, match=r"no log-prob for generated token 1 \(id 2\)"):
            continuation_from_output(output)


class TestScoreRule:
    @pytest.mark.parametrize("bad", [NAN, INF, -INF, -0.01, 1.5])
    def test_a_score_outside_zero_one_is_refused_naming_the_scorer_and_step(self, bad):
        solutions = [[Step("s0"), Step("s1")], [Step("t0"), Step("t1"), Step("t2")]]
        batch = ScoreBatch([[0.2, 0.3], [0.4, bad, 0.6]])
        with pytest.raises(ValueError, match=r"scorer prm returned score .* for step 1 of "
                                             r"solution 1"):
            check_scores(batch, solutions, "prm")
        log_case("numbers that are not numbers", f"scorer score {bad}",
                 result="refused: error naming the scorer and the step")

    def test_a_search_does_not_go_on_with_a_nan_score(self):
        policy = ScriptedPolicy(lambda prefix, j, stop: ("The answer is 7.<|end|>", "stop"))
        scorer = ScriptedScorer(score=lambda text: NAN)
        ctx = make_ctx(policy, scorer)
        with pytest.raises(ValueError, match="scorer scripted returned score nan for step 0"):
            run(ctx.score([[Step("The answer is 7.")]]))


class _FaultyOn:
    """Wraps a scripted policy: the continuations of one problem carry ``value`` as the log-prob
    of their second token (an engine gone wrong on that problem only)."""

    def __init__(self, marker: str, value: float) -> None:
        self.marker, self.value = marker, value
        self.policy = ScriptedPolicy(lambda prefix, j, stop: (
            f"Step one gives {j}.\n\nThe answer is {j}.", "eos"))

    @property
    def info(self):
        return self.policy.info

    async def extend(self, prefixes, n, *args, **kwargs):
        if any(self.marker in p for p in prefixes):
            Continuation(text="a b", finish_reason="eos", prompt_tokens=1,
                         cached_prompt_tokens=0, generated_tokens=2,
                         token_logprobs=(-0.1, self.value), token_offsets=(0, 2))
        return await self.policy.extend(prefixes, n, *args, **kwargs)

    async def close(self) -> None:
        pass


def test_a_run_records_the_other_problems_and_names_the_failed_one(tmp_path):
    config = RunConfig(dataset=DatasetSelection("gsm8k", limit=3), methods=("majority",),
                       budgets=(2,), scorer="confidence",
                       settings=SearchSettings(max_solution_tokens=40))
    problems = load_dataset("gsm8k", limit=3).problems
    faulty = _FaultyOn(problems[1].problem[:40], NAN)
    outcome = asyncio.run(run_problems(config, faulty, None, tmp_path, PromptFormat(),
                                       parallel=1))
    [failure] = outcome.failures
    assert failure.problem_id == problems[1].id and "log-prob nan" in failure.message
    records = read_records(tmp_path / "records.jsonl").records
    assert {r["problem_id"] for r in records} == {problems[0].id, problems[2].id}
    log_case("numbers that are not numbers", "NaN log-prob in one problem of a run",
             lost=0, duplicated=0, crashes=0,
             result="that problem failed, named in failures; the others recorded")
