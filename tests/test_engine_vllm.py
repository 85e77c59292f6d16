"""The vLLM engine: its request and response mapping without vLLM, and the engine itself where
vLLM and a CUDA GPU exist (``TTSCALE_VLLM_MODEL`` names a local model to load)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from types import SimpleNamespace

import pytest

from ttscale.engines import EngineSpec
from ttscale.engines.sampling import sample_seed
from ttscale.engines.vllm_engine import (
    continuation_from_output,
    parameters_from_config,
    sampling_requests,
)
from ttscale.errors import ConfigError


def test_each_sample_is_one_request_seeded_by_its_prefix_and_index():
    requests = sampling_requests(["b prefix", "a prefix"], 2, ["\n", ""], 64, 0.7, 0.9, 5,
                                 first_sample=3)
    assert [(r.prefix_index, r.sample) for r in requests] == [(1, 0), (1, 1), (0, 0), (0, 1)]
    for request in requests:
        prefix = ["b prefix", "a prefix"][request.prefix_index]
        assert request.prompt == prefix
        assert request.params == {"n": 1, "max_tokens": 64, "temperature": 0.7, "top_p": 0.9,
                                  "logprobs": 0, "stop": ["\n"],
                                  "seed": sample_seed(5, 3 + request.sample, prefix)}
    # the seed is the HTTP engine's: a sample is the same from a server or in-process
    [greedy] = sampling_requests(["p"], 1, [], 8, 0.0, 0.5, 0)
    assert "stop" not in greedy.params and greedy.params["top_p"] == 1.0


def _logprob(value: float, piece: str) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, decoded_token=piece)


def _output(text, token_ids, pieces, finish_reason, stop_reason=None, prompt=5, cached=3):
    listing = [{tid: _logprob(-0.5 - k, piece)}
               for k, (tid, piece) in enumerate(zip(token_ids, pieces, strict=True))]
    completion = SimpleNamespace(text=text, token_ids=token_ids, logprobs=listing,
                                 finish_reason=finish_reason, stop_reason=stop_reason)
    return SimpleNamespace(outputs=[completion], prompt_token_ids=list(range(prompt)),
                           num_cached_tokens=cached)


def test_a_stop_string_cuts_the_text_and_its_tokens_have_no_log_prob():
    # "2 + 2 = 4" then the stop string "\n\n", which vLLM cut from the text
    c = continuation_from_output(_output("2 + 2 = 4", [11, 12, 13, 14, 15],
                                         ["2 +", " 2", " =", " 4", "\n\n"], "stop", "\n\n"))
    assert (c.finish_reason, c.stop_string, c.text) == ("stop", "\n\n", "2 + 2 = 4")
    assert c.generated_tokens == 5
    assert c.token_offsets == (0, 3, 5, 7)
    assert c.token_logprobs == (-0.5, -1.5, -2.5, -3.5)
    assert (c.prompt_tokens, c.cached_prompt_tokens) == (5, 3)


def test_end_of_sequence_and_length():
    eos = continuation_from_output(_output("Done.", [7, 2], ["Done.", ""], "stop", None))
    assert eos.finish_reason == "eos" and eos.stop_string is None
    assert eos.generated_tokens == 2 and eos.token_logprobs == (-0.5,)
    by_token_id = continuation_from_output(_output("x", [7, 2], ["x", ""], "stop", 2))
    assert by_token_id.finish_reason == "eos"
    length = continuation_from_output(_output("a b", [1, 2], ["a", " b"], "length"))
    assert length.finish_reason == "length" and length.token_offsets == (0, 1)
    assert len(length.token_logprobs) == length.generated_tokens == 2
    empty = continuation_from_output(_output("", [2], [""], "stop", None, cached=99))
    assert empty.token_logprobs == () and empty.cached_prompt_tokens == 5


def test_parameter_count_from_a_config():
    # SmolLM2-135M's config: 134,515,008 parameters (tied embeddings)
    smol = SimpleNamespace(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                           num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                           tie_word_embeddings=True, model_type="llama")
    assert parameters_from_config(smol) == 134_515_008
    # Qwen2.5-1.5B: 1,543,714,304 (q/k/v biases, tied embeddings)
    qwen = SimpleNamespace(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                           num_key_value_heads=2, intermediate_size=8960, vocab_size=151936,
                           tie_word_embeddings=True, model_type="qwen2")
    assert parameters_from_config(qwen) == 1_543_714_304
    assert parameters_from_config(SimpleNamespace(hidden_size=8)) is None


def test_the_engine_needs_a_model():
    with pytest.raises(ConfigError, match="--engine vllm needs --model"):
        EngineSpec(kind="vllm")
    with pytest.raises(ConfigError, match="--base-url is for --engine openai"):
        EngineSpec(kind="vllm", model="m", base_url="http://127.0.0.1:1/v1")


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed (pip install 'ttscale[vllm]' on a GPU machine)")
@pytest.mark.skipif(not os.environ.get("TTSCALE_VLLM_MODEL"),
                    reason="set TTSCALE_VLLM_MODEL to a local model folder to test vLLM")
def test_the_vllm_engine_on_a_gpu():
    import asyncio

    from tests.policy_contract import check_continuation, check_first_sample_picks_the_later_samples

    if not _gpu():
        pytest.skip("vLLM needs a CUDA GPU; none is visible")
    from ttscale.engines import load_policy

    engine = load_policy(EngineSpec(kind="vllm", model=os.environ["TTSCALE_VLLM_MODEL"],
                                    gpu_memory_utilization=0.5))
    prompt = "Problem: What is 2 + 3?\nSolution:"
    [[greedy]] = asyncio.run(engine.extend([prompt], 1, [], 32, 0.0, 1.0, 0))
    check_continuation(engine, prompt, greedy, 32)
    [[again]] = asyncio.run(engine.extend([prompt], 1, [], 32, 0.0, 1.0, 0))
    assert again.text == greedy.text and again.cached_prompt_tokens > 0  # prefix cache
    check_first_sample_picks_the_later_samples(engine, [prompt, "Problem: 7 * 6?\nSolution:"])
    assert engine.info.parameters and engine.info.extra["engine"] == "vllm"
    assert math.isfinite(sum(greedy.token_logprobs))
    print(json.dumps({"model": engine.info.name, "parameters": engine.info.parameters}))
