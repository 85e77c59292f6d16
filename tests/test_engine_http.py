"""The OpenAI-compatible completions engine, against a real llama-cpp-python server process
serving the embedded SmolLM2-135M model.

What llama-cpp-python's server (0.3.x) returns, which these tests pin down:

* ``finish_reason`` is ``"stop"`` for both end-of-sequence and a stop string, with no
  ``stop_reason``; the logprob listing includes the stop string's tokens (past the returned
  text) but no end-of-sequence token, so the engine tells the two apart from that overhang.
* ``usage.completion_tokens`` counts every generated token, stop-string tokens included, and
  equals the length of ``logprobs.token_logprobs`` (never ``None`` without ``echo``).
* ``usage`` has no ``prompt_tokens_details``, so ``cached_prompt_tokens`` is 0.
* ``logprobs.text_offset`` counts from the start of the prompt.
* A request's ``seed`` makes sampling at ``temperature > 0`` reproducible.
* The server applies a repeat penalty of 1.1 by default, even at ``temperature == 0``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy_contract import check_first_sample_picks_the_later_samples
from server_process import embedded_llama_server, free_port
from ttscale.engines.base import Continuation, Policy
from ttscale.engines.model_names import parameters_from_name
from ttscale.engines.openai_errors import translate_error
from ttscale.engines.openai_http import OpenAICompletionsEngine, check_server
from ttscale.engines.openai_responses import continuation_from_response
from ttscale.engines.sampling import sample_seed
from ttscale.errors import (
    ContextLengthError,
    EngineError,
    ModelLoadError,
    RetryableEngineError,
)

openai = pytest.importorskip("openai")

# The real server answers in seconds here and in minutes on a slow, busy machine: these limits
# only stop what would never end.
REQUEST_LIMIT_S = 600
RUN_LIMIT_S = 1800  # a whole `ttscale run` through the server


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (ending in /v1) of a llama-cpp-python server on the embedded model."""
    with embedded_llama_server(tmp_path_factory.mktemp("llama_server")) as base_url:
        # The first decode after start-up can be slow on a busy machine; pay it here, once.
        check = OpenAICompletionsEngine(base_url, timeout=REQUEST_LIMIT_S, max_retries=0)
        _extend(check, ["Hi"], n=1, max_tokens=1, temperature=0.0)
        yield base_url


def _extend(engine: OpenAICompletionsEngine, prefixes: list[str], n: int, **kwargs):
    settings = dict(stop=[], max_tokens=8, temperature=0.8, top_p=0.95, seed=0)
    settings.update(kwargs)

    async def go() -> list[list[Continuation]]:
        try:
            return await engine.extend(prefixes, n, **settings)
        finally:
            await engine.close()

    return asyncio.run(go())


@pytest.fixture()
def engine(server_url: str) -> OpenAICompletionsEngine:
    return OpenAICompletionsEngine(server_url, model=None, concurrency=4,
                                   timeout=REQUEST_LIMIT_S)


# --------------------------------------------------------------------------- real server


def test_extend_shapes_usage_and_logprobs(engine: OpenAICompletionsEngine) -> None:
    assert isinstance(engine, Policy)
    prefixes = ["Once upon a time", "The three largest cities of France are Paris,"]
    rows = _extend(engine, prefixes, n=2, max_tokens=8, seed=3)
    assert len(rows) == 2 and all(len(row) == 2 for row in rows)
    for row in rows:
        assert row[0].prompt_tokens == row[1].prompt_tokens > 0
        for c in row:
            assert c.text
            assert c.finish_reason in ("stop", "eos", "length")
            assert 0 < c.generated_tokens <= 8
            assert c.cached_prompt_tokens == 0  # the server does not report cached tokens
            assert c.token_logprobs is not None
            assert len(c.token_logprobs) == c.generated_tokens
            assert all(lp <= 0 for lp in c.token_logprobs)
            assert c.token_offsets is not None
            assert len(c.token_offsets) == c.generated_tokens
            assert c.token_offsets[0] == 0
            assert list(c.token_offsets) == sorted(c.token_offsets)
            assert c.token_offsets[-1] <= len(c.text)
    # the second prefix is longer than the first
    assert rows[1][0].prompt_tokens > rows[0][0].prompt_tokens


def test_stop_string_is_honoured(engine: OpenAICompletionsEngine) -> None:
    [[c]] = _extend(
        engine, ["Count: 1, 2, 3, 4,"], n=1, stop=[" 7"], max_tokens=16, temperature=0.0
    )
    assert " 7" not in c.text
    assert "6" in c.text  # greedy counting runs up to the stop string
    assert c.finish_reason == "stop"
    assert c.stop_string == " 7"
    # the stop string's tokens were generated, so they are counted and scored
    assert c.token_logprobs is not None and len(c.token_logprobs) == c.generated_tokens


def test_end_of_sequence_is_not_a_stop_string(engine: OpenAICompletionsEngine) -> None:
    prompt = (
        "<|im_start|>user\nWhat is 2+2? Answer with a number only.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    [[c]] = _extend(engine, [prompt], n=1, stop=["\n\n"], max_tokens=40, temperature=0.0)
    assert c.finish_reason == "eos"
    assert c.stop_string is None
    assert c.generated_tokens < 40


def test_max_tokens_gives_length(engine: OpenAICompletionsEngine) -> None:
    [[c]] = _extend(engine, ["Once upon a time"], n=1, max_tokens=5, temperature=0.0)
    assert c.finish_reason == "length"
    assert c.generated_tokens == 5


@pytest.mark.slow
def test_seeded_sampling_is_reproducible_and_prefix_stable(server_url: str) -> None:
    def sample(n: int) -> list[str]:
        engine = OpenAICompletionsEngine(server_url, concurrency=4, timeout=REQUEST_LIMIT_S)
        [row] = _extend(engine, ["Once upon a time"], n=n, max_tokens=8, temperature=0.8, seed=7)
        return [c.text for c in row]

    three = sample(3)
    assert sample(3) == three
    assert sample(2) == three[:2]
    # distinct per-sample seeds: three samples at temperature 0.8 are not all the same text
    assert len(set(three)) > 1


@pytest.mark.slow
def test_first_sample_picks_the_later_samples(engine: OpenAICompletionsEngine) -> None:
    check_first_sample_picks_the_later_samples(
        engine, ["Once upon a time", "The three largest cities of France are Paris,"],
        extend_with=_extend)


def test_first_sample_offsets_the_server_seeds() -> None:
    engine = OpenAICompletionsEngine("http://x:1/v1", model="m", parameters=5)
    seeds: list[tuple[str, int]] = []

    async def one(prefix, stops, max_tokens, temperature, top_p, seed):
        seeds.append((prefix, seed))
        return Continuation("", "eos", 1, 0, 1)

    engine._one = one  # type: ignore[method-assign]
    _extend(engine, ["b", "a"], n=2, first_sample=3, seed=9)
    asyncio.run(engine.close())
    assert sorted(seeds) == sorted((p, sample_seed(9, j, p)) for p in "ab" for j in (3, 4))


def test_model_discovered_from_server(server_url: str) -> None:
    served = check_server(server_url)
    assert len(served) == 1
    engine = OpenAICompletionsEngine(server_url, model=None)
    info = engine.info
    assert info.name == served[0]
    assert info.name.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert info.parameters == 135_000_000  # read from the name


def test_context_overflow_is_a_context_length_error(server_url: str) -> None:
    engine = OpenAICompletionsEngine(server_url, model="smollm2", parameters=135_000_000)
    with pytest.raises(ContextLengthError, match="context"):
        _extend(engine, ["hello " * 5000], n=1, max_tokens=4)


def test_endpoint_down_fails_fast_and_clearly() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    # long timeouts: failing sooner than any of them shows the refusal was not waited out
    engine = OpenAICompletionsEngine(
        base_url, model="Qwen2.5-Math-7B-Instruct", timeout=60, max_retries=0
    )
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        _extend(engine, ["x"], n=2, max_tokens=4)
    message = str(info.value)
    assert message.startswith(f"cannot reach the OpenAI-compatible server at {base_url}: ")
    assert "check --base-url" in message and "\n" not in message
    with pytest.raises(ModelLoadError, match="cannot reach the OpenAI-compatible server"):
        check_server(base_url, timeout=60)
    with pytest.raises(ModelLoadError, match="cannot reach"):
        OpenAICompletionsEngine(base_url, model=None, timeout=60, max_retries=0).info  # noqa: B018
    assert time.monotonic() - start < 10  # .info waits at most 10 s for the model list


# --------------------------------------------------------------------------- pure units


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Qwen2.5-Math-7B-Instruct", 7_000_000_000),
        ("Qwen/Qwen2.5-Math-1.5B-Instruct", 1_500_000_000),
        ("SmolLM2-135M", 135_000_000),
        ("/models/SmolLM2-135M-Instruct.Q4_1.gguf", 135_000_000),
        ("meta-llama/Llama-3.1-70B", 70_000_000_000),
        ("Llama-3.2-1B-Instruct", 1_000_000_000),
        ("gemma-2-2b-it", 2_000_000_000),
        ("llama3.1:8b-instruct-q4_K_M", 8_000_000_000),
        ("Qwen2.5-7B-Instruct-1M", 7_000_000_000),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32_000_000_000),
        ("Qwen2.5-Math-PRM-7B", 7_000_000_000),
        ("Mixtral-8x7B-Instruct-v0.1", None),
        ("Qwen3-30B-A3B", None),
        ("gpt-4o", None),
        ("my-model", None),
        ("Qwen2.5-Math-Instruct", None),
    ],
)
def test_parameters_from_name(name: str, expected: int | None) -> None:
    assert parameters_from_name(name) == expected


def test_unknown_parameters_warns(caplog: pytest.LogCaptureFixture) -> None:
    engine = OpenAICompletionsEngine("http://127.0.0.1:9/v1", model="my-model")
    with caplog.at_level("WARNING"):
        assert engine.info.parameters is None
    assert "parameter count" in caplog.text
    assert OpenAICompletionsEngine("http://x:1/v1", model="m", parameters=5).info.parameters == 5


SEED_CASES = [(0, 0, ""), (0, 5, "beam a"), (7, 3, "Problem: 2 + 2?\nStep 1:"),
              (2**40, 1, "é ∑ 中")]


def _sample_seeds_in_another_process(hash_seed: str) -> list[int]:
    """``sample_seed`` of each of ``SEED_CASES``, computed by a fresh interpreter whose string
    hashing is salted with ``hash_seed``."""
    code = ("import json, sys\nfrom ttscale.engines.sampling import sample_seed\n"
            "print(json.dumps([sample_seed(*case) for case in json.loads(sys.argv[1])]))")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(SEED_CASES)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sample_seed_is_the_same_in_every_process() -> None:
    # a resumed run, a Ray actor or a vLLM engine elsewhere must draw the very same samples,
    # so the seed may not follow Python's per-process salted hash
    here = [sample_seed(*case) for case in SEED_CASES]
    assert _sample_seeds_in_another_process("1") == here
    assert _sample_seeds_in_another_process("2") == here


def test_sample_seed_differs_between_seeds_samples_and_prefixes() -> None:
    seeds = [sample_seed(seed, j, prefix) for seed in range(4) for j in range(16)
             for prefix in ("", "beam a", "beam b")]
    # all distinct: the beams of one round do not share random numbers, and neighbouring
    # call seeds share no samples (as seed + j would, for (0, 1) and (1, 0))
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**31 for s in seeds)


def _completion(choice: dict, usage: dict | None = None):
    return openai.types.Completion.construct(
        **{
            "id": "c",
            "object": "text_completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "logprobs": None, **choice}],
            "usage": usage,
        }
    )


USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_vllm_stop_reason_maps_to_stop_or_eos() -> None:
    hit = continuation_from_response(
        _completion({"text": "a b", "finish_reason": "stop", "stop_reason": "\n\n"}, USAGE),
        ["\n\n"],
    )
    assert (hit.finish_reason, hit.stop_string) == ("stop", "\n\n")
    for reason in (None, 151643):
        eos = continuation_from_response(
            _completion({"text": "a b", "finish_reason": "stop", "stop_reason": reason}, USAGE),
            ["\n\n"],
        )
        assert (eos.finish_reason, eos.stop_string) == ("eos", None)


def test_stop_string_left_in_text_is_cut() -> None:
    c = continuation_from_response(
        _completion({"text": "step one\n\nstep two", "finish_reason": "stop"}, USAGE), ["\n\n"]
    )
    assert (c.text, c.finish_reason, c.stop_string) == ("step one", "stop", "\n\n")


def test_ambiguous_stop_without_token_listing() -> None:
    # no stop strings asked: the server can only have stopped at end of sequence
    assert (
        continuation_from_response(_completion({"text": "x", "finish_reason": "stop"}), [])
    ).finish_reason == "eos"
    # stop strings asked, no stop_reason, no tokens: a stop, of unknown kind
    c = continuation_from_response(_completion({"text": "x", "finish_reason": "stop"}), ["\n"])
    assert (c.finish_reason, c.stop_string) == ("stop", None)
    # no usage: counts fall back to what is known
    assert (c.prompt_tokens, c.generated_tokens, c.token_logprobs) == (0, 0, None)


def test_usage_details_and_logprob_listing() -> None:
    c = continuation_from_response(
        _completion(
            {
                "text": "ab",
                "finish_reason": "length",
                "logprobs": {
                    "tokens": ["a", "b", "c"],
                    "token_logprobs": [None, -0.5, -1.0],
                    "text_offset": [40, 41, 42],
                },
            },
            {**USAGE, "prompt_tokens_details": {"cached_tokens": 8}},
        ),
        [],
    )
    assert c.cached_prompt_tokens == 8 and c.computed_prompt_tokens == 2
    assert c.token_logprobs == (-0.5, -1.0)
    assert c.token_offsets == (1, 2)
    assert c.finish_reason == "length"


def test_http_errors_map_to_engine_errors() -> None:
    try:
        import httpx2 as httpx  # the HTTP library of openai >= 3
    except ImportError:
        import httpx

    request = httpx.Request("POST", "http://h/v1/completions")
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        404: openai.NotFoundError,
        503: openai.InternalServerError,
    }

    def status_error(code: int, body: dict) -> Exception:
        response = httpx.Response(code, request=request, json=body)
        return classes[code](str(body), response=response, body=body)

    url = "http://h/v1"
    assert isinstance(
        translate_error(status_error(401, {"error": {"message": "bad key"}}), url, "m"),
        EngineError,
    )
    assert "API key" in str(translate_error(status_error(401, {}), url, "m"))
    vllm_overflow = {
        "message": "This model's maximum context length is 4096 tokens. However, you "
        "requested 5000 tokens",
        "type": "BadRequestError",
    }
    assert isinstance(
        translate_error(status_error(400, vllm_overflow), url, "m"), ContextLengthError
    )
    assert isinstance(
        translate_error(status_error(503, {"error": {"message": "busy"}}), url, "m"),
        RetryableEngineError,
    )
    assert isinstance(
        translate_error(status_error(404, {"error": {"message": "no such model"}}), url, "m"),
        ModelLoadError,
    )


@pytest.mark.slow
@pytest.mark.timeout(2400)  # past RUN_LIMIT_S: the run's own limit fires first
def test_cli_run_through_the_server(server_url: str, tmp_path: Path) -> None:
    """The whole loop over HTTP: `ttscale run --engine openai` against the real server."""
    import json
    import sys

    out = tmp_path / "run"
    command = [sys.executable, "-m", "ttscale.cli.main", "run", "--engine", "openai",
               "--base-url", server_url, "--dataset", "gsm8k", "--limit", "1",
               "--method", "bon,beam", "--n", "2", "--width", "2", "--max-step-tokens", "32",
               "--max-solution-tokens", "96", "--max-depth", "3", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT_S,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records) == ["gsm8k-test-0000|beam|2",
                                                 "gsm8k-test-0000|bon|2"]
    bon = next(r for r in records if r["method"] == "bon")
    assert len(bon["candidates"]) == 2
    # the server's log-probs reached the confidence scorer: real scores, not the neutral 0.5
    scores = [s for c in bon["candidates"] for s in c["step_scores"]]
    assert scores and any(s != 0.5 for s in scores)
    assert bon["ledger"]["policy_tokens"]["generated"] > 0
    assert bon["ledger"]["policy_parameters"] == 135_000_000  # read from the model's name


def test_requests_in_flight_stay_within_concurrency(server_url: str) -> None:
    """Three problems' calls at once, eight samples each, against a bound of three: requests
    wait for a free place instead of piling onto the server."""

    class Counting(OpenAICompletionsEngine):
        """Counts the HTTP requests open at once, at the client (a real server answers)."""

        in_flight = peak = 0

        def _client(self):
            client = super()._client()
            if not getattr(client, "counted", False):
                create = client.completions.create

                async def counted(**kwargs):
                    Counting.in_flight += 1
                    Counting.peak = max(Counting.peak, Counting.in_flight)
                    try:
                        return await create(**kwargs)
                    finally:
                        Counting.in_flight -= 1

                client.completions.create = counted
                client.counted = True
            return client

    engine = Counting(server_url, concurrency=3, timeout=REQUEST_LIMIT_S)

    async def go():
        try:
            return await asyncio.gather(*(
                engine.extend([f"Problem {k}: 2 + {k} ="], 8, [], 2, 0.8, 1.0, k)
                for k in range(3)))
        finally:
            await engine.close()

    replies = asyncio.run(go())
    assert [len(row) for [row] in replies] == [8, 8, 8]
    assert Counting.peak == 3 and Counting.in_flight == 0
