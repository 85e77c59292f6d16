"""The hf engine on the embedded SmolLM2-135M GGUF, dequantized by transformers, and on a tiny
randomly initialised model saved as a Hugging Face folder (no mocks).

Reference numerics: the GGUF is Q4_1. transformers dequantizes its weights to float32 and
computes in float32; llama.cpp multiplies the 4-bit blocks with 8-bit-quantized (Q8_1)
activations and keeps keys and values in float16, in SIMD kernels chosen for the CPU, whose
rounding the activation quantization magnifies. So llama.cpp's log-probabilities depend on the
machine: for the first token after the few-shot prefix below it gives -0.940 with AVX-512
kernels and -0.889 with AVX2 ones, where transformers gives -0.9935 on both (its kernels move it
by ~1e-5). Whether the two greedy texts part depends on the machine too: transformers picks
that first token by only 0.26 nats. So the cross-check with llama.cpp compares the choice of
the next token along one token path, where the choice is clear (``CLEAR``), and the exact
checks are made against transformers itself: ``generate(do_sample=False)`` and a plain
forward pass over the same weights, which differ from the engine's cached decoding by float32
rounding alone (1e-5 to 2e-5 with torch's AVX-512, AVX2 and plain kernels; 1e-4 is
asserted)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from policy_contract import (
    check_concurrent_calls_from_one_event_loop,
    check_continuation,
    check_first_sample_picks_the_later_samples,
    check_max_tokens_ends_with_length,
    check_stop_string_cuts_the_text,
    extend,
    texts,
)
from ttscale.engines import EngineSpec, load_policy
from ttscale.engines.base import CacheClearing, Continuation, NextTokenScoring, Policy
from ttscale.engines.embedded import EMBEDDED_NAME
from ttscale.errors import ConfigError, ContextLengthError, EngineError, ModelLoadError

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # the machine is small and shared: one thread is steadier

from ttscale.engines.hf import HFEngine  # noqa: E402

FEW_SHOT = ("Problem: What is 2 + 3?\nSolution:\nStep 1: 2 + 3 = 5.\nThe answer is 5.\n\n"
            "Problem: Sam has 4 pens and buys 6 more. How many pens does he have?\nSolution:\n"
            "Step 1: He has 4 + 6 = 10 pens.\nThe answer is 10.\n\n"
            "Problem: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
            "Solution:\nStep 1:")
PROMPT = ("Problem: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
          "Solution:\nStep 1:")
OTHER = ("Problem: A train travels 60 km in 1.5 hours. What is its average speed?\n"
         "Solution:\nStep 1:")
SHORT = "Problem: 7 * 6 = ?\nSolution:"
GREEDY_TOKENS = 24
# nats between transformers' two likeliest tokens for llama.cpp to have to pick the same one:
# along the path below the two engines' log-probabilities of a token part by up to 0.05 nats
# with AVX-512 kernels and 0.15 with AVX2 ones, and their top-two margins by up to 0.3; a whole
# nat is three times that. Which choices are clear is read from transformers, the same on any CPU.
CLEAR = 1.0







def log_softmax(logits) -> np.ndarray:
    return torch.log_softmax(logits.float(), dim=-1).numpy()


@pytest.fixture(scope="module")
def engine() -> Iterator[HFEngine]:
    policy = HFEngine(max_batch=8)
    yield policy
    asyncio.run(policy.close())


@pytest.fixture(scope="module")
def greedy(engine: HFEngine) -> Continuation:
    [[c]] = extend(engine, [FEW_SHOT], max_tokens=GREEDY_TOKENS, temperature=0.0)
    assert c.finish_reason == "length" and len(c.token_offsets) == GREEDY_TOKENS
    return c


@pytest.fixture(scope="module")
def reference_ids(engine: HFEngine) -> list[int]:
    """transformers' own greedy tokens after ``FEW_SHOT``."""
    prompt = torch.tensor([engine.tokenize(FEW_SHOT)])
    with torch.inference_mode():
        out = engine.model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                    max_new_tokens=GREEDY_TOKENS, do_sample=False)
    return out[0, prompt.shape[1]:].tolist()


@pytest.fixture(scope="module")
def tiny_folder(engine: HFEngine, tmp_path_factory) -> Path:
    """A two-layer Llama with random weights and the embedded model's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = engine.tokenizer
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- the protocols and the model ---------------------------------------------------------------
def test_is_a_policy_and_reads_its_model(engine: HFEngine) -> None:
    assert isinstance(engine, Policy) and isinstance(engine, NextTokenScoring)
    assert not isinstance(engine, CacheClearing)  # nothing is kept between calls
    info = engine.info
    assert info.name == EMBEDDED_NAME
    assert info.parameters == 134_515_008  # as llama.cpp counts the same file
    assert info.context_length == 8192
    assert info.chat_template and "messages" in info.chat_template
    assert info.extra == {"engine": "hf", "path": engine.path, "dtype": "float32",
                          "device": "cpu"}
    assert engine.path.endswith(".gguf")


def test_shapes_and_per_token_fields(engine: HFEngine) -> None:
    prefixes = [PROMPT, OTHER]
    rows = extend(engine, prefixes, 3, max_tokens=10, seed=5)
    assert [len(row) for row in rows] == [3, 3]
    for prefix, row in zip(prefixes, rows, strict=True):
        for c in row:
            check_continuation(engine, prefix, c, 10)
    assert extend(engine, [], 3) == []


# -- greedy decoding against transformers and llama.cpp ----------------------------------------
def test_greedy_matches_transformers_generate(engine: HFEngine, greedy: Continuation,
                                              reference_ids: list[int]) -> None:
    assert greedy.text == engine.tokenizer.decode(reference_ids)
    assert greedy.generated_tokens == len(reference_ids)


def test_greedy_logprobs_match_a_plain_forward_pass(engine: HFEngine, greedy: Continuation,
                                                    reference_ids: list[int]) -> None:
    prompt = engine.tokenize(FEW_SHOT)
    with torch.inference_mode():
        logits = engine.model(torch.tensor([prompt + reference_ids])).logits[0]
    rows = log_softmax(logits[len(prompt) - 1:-1])
    expected = rows[np.arange(len(reference_ids)), reference_ids]
    assert np.allclose(greedy.token_logprobs, expected, atol=1e-4)
    assert (rows.argmax(axis=-1) == reference_ids).all()  # greedy took the likeliest token
    # each token's offset is where its text starts
    ends = [len(engine.tokenizer.decode(reference_ids[:k])) for k in range(len(reference_ids))]
    assert list(greedy.token_offsets) == ends


def test_greedy_agrees_with_llama_cpp(engine: HFEngine, reference_ids: list[int]) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from ttscale.engines.llama_cpp import LlamaCppEngine

    policy = LlamaCppEngine(n_ctx=512, n_threads=1)
    try:
        assert policy.tokenize(FEW_SHOT) == engine.tokenize(FEW_SHOT)
        path, rows = policy.path, policy.rows_per_call
    finally:
        policy.free()
    prompt = engine.tokenize(FEW_SHOT)
    tokens = prompt + reference_ids
    # both models read the same tokens, transformers' greedy ones, so that one close choice
    # does not send the two texts apart; llama.cpp computes them as its engine does (flash
    # attention, calls of at most rows_per_call rows; see test_engine_llama)
    reference = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False,
                                logits_all=True, flash_attn=True, n_threads=1, n_batch=rows)
    try:
        reference.eval(tokens)
        theirs = np.array(reference.scores[len(prompt) - 1:len(tokens) - 1])
    finally:
        reference.close()
    with torch.inference_mode():
        ours = log_softmax(engine.model(torch.tensor([tokens])).logits[0, len(prompt) - 1:-1])
    top_two = np.sort(ours, axis=-1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > CLEAR
    assert clear.sum() >= GREEDY_TOKENS // 2  # 22 of the 24 choices are clear
    # where transformers' choice is clear, llama.cpp makes it too
    assert (theirs.argmax(axis=-1)[clear] == np.array(reference_ids)[clear]).all()


# -- sampling ----------------------------------------------------------------------------------
def test_seeded_sampling_is_reproducible_and_first_samples_do_not_depend_on_n(
        engine: HFEngine) -> None:
    four = extend(engine, [PROMPT], 4, seed=3)
    assert extend(engine, [PROMPT], 4, seed=3) == four  # texts, logprobs, offsets alike
    two = extend(engine, [PROMPT], 2, seed=3)
    assert texts(four)[0][:2] == texts(two)[0]
    assert len(set(texts(four)[0])) > 1  # the samples of one prefix differ from each other
    assert texts(extend(engine, [PROMPT], 4, seed=4)) != texts(four)


def test_first_sample_picks_the_later_samples(engine: HFEngine) -> None:
    check_first_sample_picks_the_later_samples(engine, [PROMPT, OTHER])


def test_batched_prefixes_of_different_lengths_match_one_by_one(engine: HFEngine) -> None:
    prefixes = [PROMPT, SHORT, OTHER]  # 28, 11 and 30 tokens: left padding
    assert len({len(engine.tokenize(p)) for p in prefixes}) == 3
    together = texts(extend(engine, prefixes, max_tokens=12, temperature=0.0))
    alone = [texts(extend(engine, [p], max_tokens=12, temperature=0.0))[0] for p in prefixes]
    assert together == alone
    # samples too: each has its own random stream, whatever shares its batch
    sampled = texts(extend(engine, [SHORT, PROMPT], 2, max_tokens=8, seed=9))
    assert sampled[1] == texts(extend(engine, [PROMPT], 2, max_tokens=8, seed=9))[0]


def test_micro_batches_give_the_same_samples_and_honest_prompt_counts(engine: HFEngine) -> None:
    whole = extend(engine, [PROMPT, SHORT], 3, max_tokens=6, seed=2)
    length = len(engine.tokenize(PROMPT))
    # one batch: each prefix is computed once, for its first sample
    assert [c.cached_prompt_tokens for c in whole[0]] == [0, length, length]
    engine.max_batch = 2
    try:
        split = extend(engine, [PROMPT, SHORT], 3, max_tokens=6, seed=2)
    finally:
        engine.max_batch = 8
    assert texts(split) == texts(whole)
    # batches of two rows: (P0 P1) (P2 S0) (S1 S2); a prefix split across batches is computed
    # again by its first sample in each
    assert [c.computed_prompt_tokens for c in split[0]] == [length, 0, length]
    assert [c.computed_prompt_tokens > 0 for c in split[1]] == [True, True, False]


# -- stop strings and lengths ------------------------------------------------------------------
def test_stop_string_cuts_the_text(engine: HFEngine, greedy: Continuation) -> None:
    check_stop_string_cuts_the_text(engine, FEW_SHOT, greedy, GREEDY_TOKENS, 1e-6)


def test_the_earliest_of_several_stop_strings_wins(engine: HFEngine,
                                                   greedy: Continuation) -> None:
    text = greedy.text
    early = text[len(text) // 3:len(text) // 3 + 4]
    late = text[2 * len(text) // 3:2 * len(text) // 3 + 4]
    assert 0 < text.find(early) < text.find(late)
    [[c]] = extend(engine, [FEW_SHOT], stop=[late, "never in this text", "", early],
                   max_tokens=GREEDY_TOKENS, temperature=0.0)
    assert c.text == text[:text.find(early)]
    assert c.finish_reason == "stop" and c.stop_string == early
    [[c]] = extend(engine, [FEW_SHOT], stop=[text[:4]], max_tokens=GREEDY_TOKENS,
                   temperature=0.0)
    assert c.text == "" and c.token_offsets == () and c.token_logprobs == ()


def test_max_tokens_ends_with_length(engine: HFEngine, greedy: Continuation) -> None:
    check_max_tokens_ends_with_length(engine, FEW_SHOT, greedy, 1e-6)


# -- next-token scoring ------------------------------------------------------------------------
def test_next_token_logprobs_match_a_forward_pass(engine: HFEngine) -> None:
    candidates = [" He", " The", " 8", "Yes"]
    prefixes = [FEW_SHOT, SHORT]  # of different lengths: left padding
    results = asyncio.run(engine.next_token_logprobs(prefixes, candidates))
    for prefix, result in zip(prefixes, results, strict=True):
        tokens = engine.tokenize(prefix)
        with torch.inference_mode():
            row = log_softmax(engine.model(torch.tensor([tokens])).logits[0, -1])
        for candidate in candidates:
            first = engine.tokenizer(candidate, add_special_tokens=False)["input_ids"][0]
            assert result.logprobs[candidate] == pytest.approx(float(row[first]), abs=1e-4)
        assert result.prompt_tokens == len(tokens) and result.cached_prompt_tokens == 0
    assert results[0].logprobs[" He"] > results[0].logprobs["Yes"]  # the few-shot pattern
    assert asyncio.run(engine.next_token_logprobs([], candidates)) == []


# -- a Hugging Face model folder ---------------------------------------------------------------
def test_a_model_folder_loads_in_the_dtype_asked(engine: HFEngine, tiny_folder: Path) -> None:
    tiny = HFEngine(tiny_folder, dtype="bfloat16")
    try:
        assert tiny.model.dtype == torch.bfloat16
        info = tiny.info
        assert info.name == tiny_folder.name and info.context_length == 64
        assert info.parameters == sum(p.numel() for p in tiny.model.parameters())
        assert info.extra == {"engine": "hf", "path": str(tiny_folder), "dtype": "bfloat16",
                              "device": "cpu"}
        assert tiny.tokenize(PROMPT) == engine.tokenize(PROMPT)
        [row] = extend(tiny, [PROMPT], 2, max_tokens=6, seed=1)
        for c in row:
            check_continuation(tiny, PROMPT, c, 6)
        # a continuation stops at the context window
        [[c]] = extend(tiny, [OTHER + OTHER], max_tokens=20, temperature=0.0)
        assert c.generated_tokens <= 64 - len(tiny.tokenize(OTHER + OTHER)) < 20
        with pytest.raises(ContextLengthError, match="does not fit"):
            extend(tiny, [OTHER * 3])
    finally:
        asyncio.run(tiny.close())
    assert HFEngine(tiny_folder).model.dtype == torch.float32  # auto on the CPU


def test_load_policy_builds_the_hf_engine(tiny_folder: Path) -> None:
    policy = load_policy(EngineSpec(kind="hf", model=str(tiny_folder), dtype="float16"))
    assert isinstance(policy, HFEngine) and policy.info.extra["dtype"] == "float16"
    with pytest.raises(ConfigError, match="base-url"):
        EngineSpec(kind="hf", base_url="http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="float64"):
        EngineSpec(kind="hf", dtype="float64")


# -- errors ------------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(ModelLoadError, match="does not exist") as raised:
        HFEngine(path)
    assert str(path) in str(raised.value)
    with pytest.raises(ModelLoadError, match="does not exist"):
        HFEngine(gguf_file=tmp_path / "absent.gguf")


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"{}")
    with pytest.raises(ModelLoadError, match="no config.json"):
        HFEngine(tmp_path)


def test_file_that_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        HFEngine(path)


def test_hub_name_while_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set") as raised:
        HFEngine("nobody-here/no-such-model")
    assert "\n" not in str(raised.value) and "hf download" in str(raised.value)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"dtype": "float64"}, ConfigError, "dtype"),
    ({"device": "tpu"}, ConfigError, "device"),
    ({"max_batch": 0}, ConfigError, "max_batch"),
])
def test_bad_settings(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        HFEngine(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")
def test_cuda_without_a_gpu() -> None:
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        HFEngine(device="cuda")


@pytest.mark.parametrize("bad", [
    {"n": 0}, {"max_tokens": 0}, {"temperature": -0.5}, {"top_p": 0.0}, {"top_p": 1.5},
])
def test_bad_arguments_are_value_errors(engine: HFEngine, bad: dict) -> None:
    with pytest.raises(ValueError):
        extend(engine, [PROMPT], **bad)


def test_errors_leave_the_engine_usable(engine: HFEngine) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        extend(engine, PROMPT)  # type: ignore[arg-type]
    before = texts(extend(engine, [SHORT], 2, max_tokens=4, seed=8))
    with pytest.raises(EngineError, match="empty prefix"):
        extend(engine, [SHORT, ""], 2, max_tokens=4)
    with pytest.raises(ValueError, match="no token"):
        asyncio.run(engine.next_token_logprobs([SHORT], [""]))
    assert texts(extend(engine, [SHORT], 2, max_tokens=4, seed=8)) == before


def test_concurrent_calls_from_one_event_loop(engine: HFEngine) -> None:
    check_concurrent_calls_from_one_event_loop(engine, [SHORT, PROMPT], 4)
