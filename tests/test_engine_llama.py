"""The llama.cpp engine, on the embedded SmolLM2-135M GGUF (no mocks).

Reference numerics: llama.cpp's CPU flash attention and its plain attention path give log
probabilities that differ by up to ~0.2 nats on this 4-bit model (e.g. -1.464 against -1.432
for the first token of ``PROMPT``), enough to flip a greedy choice within 24 tokens. The
engine leaves flash attention on ``auto``, which is on for the CPU, so the cross-checks build
llama-cpp-python's high-level ``Llama`` with ``flash_attn=True``, and with calls of at most
the engine's ``rows_per_call`` rows, which llama.cpp's CPU kernels compute alike whatever else
shares a call (a larger call may round differently, by how much depends on the CPU). The
reference then computes the engine's numbers on any machine: its greedy text is the engine's,
and its log-probabilities are the engine's but for the log-softmax's own rounding (float32
there, float64 here: ~1e-6 on logits of a few tens; 1e-5 is asserted)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

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
from ttscale.engines.base import Continuation, Policy
from ttscale.engines.embedded import EMBEDDED_NAME
from ttscale.engines.kv_tree import common_prefix_length
from ttscale.engines.llama_cpp import LlamaCppEngine
from ttscale.errors import ConfigError, ContextLengthError, EngineError, ModelLoadError

llama_cpp = pytest.importorskip("llama_cpp")

PROMPT = ("Problem: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
          "Solution:\nStep 1:")
OTHER = ("Problem: A train travels 60 km in 1.5 hours. What is its average speed?\n"
         "Solution:\nStep 1:")
GREEDY_TOKENS = 24
# One thread: llama.cpp's worker threads spin at every barrier, so on a small machine shared
# with other busy processes two threads can run a hundred times slower than one.
THREADS = 1




def uncached(rows: list[list[Continuation]]) -> list[list[Continuation]]:
    return [[replace(c, cached_prompt_tokens=0) for c in row] for row in rows]


common_length = common_prefix_length





@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    policy = LlamaCppEngine(n_ctx=8192, n_threads=THREADS)
    yield policy
    policy.free()


@pytest.fixture(scope="module")
def small_engine() -> Iterator[LlamaCppEngine]:
    """Three sequences for samples (a fourth is scratch) and a 256-token cache."""
    policy = LlamaCppEngine(n_ctx=256, n_seq_max=4, n_threads=THREADS)
    yield policy
    policy.free()


@pytest.fixture(scope="module")
def greedy(engine: LlamaCppEngine) -> Continuation:
    [[c]] = extend(engine, [PROMPT], max_tokens=GREEDY_TOKENS, temperature=0.0)
    assert c.finish_reason == "length" and len(c.token_offsets) == GREEDY_TOKENS
    return c


# -- the protocol and the model ----------------------------------------------------------------
def test_is_a_policy_and_reads_its_model(engine: LlamaCppEngine) -> None:
    assert isinstance(engine, Policy)
    info = engine.info
    assert info.name == EMBEDDED_NAME == "SmolLM2-135M-Instruct"
    assert info.parameters is not None and 130e6 < info.parameters < 140e6  # 134,515,008
    assert info.context_length == 8192
    assert info.chat_template and "messages" in info.chat_template
    assert info.extra["engine"] == "llama.cpp" and info.extra["path"] == str(engine.path)


def test_shapes_and_per_token_fields(engine: LlamaCppEngine) -> None:
    prefixes = [PROMPT, OTHER]
    rows = extend(engine, prefixes, 3, max_tokens=16, seed=5)
    assert [len(row) for row in rows] == [3, 3]
    for prefix, row in zip(prefixes, rows, strict=True):
        for c in row:
            check_continuation(engine, prefix, c, 16)
    assert extend(engine, [], 3) == []


# -- determinism and independence of samples ---------------------------------------------------
def test_same_call_gives_same_samples(engine: LlamaCppEngine) -> None:
    first = extend(engine, [PROMPT, OTHER], 2, seed=11)
    second = extend(engine, [PROMPT, OTHER], 2, seed=11)
    # texts, log-probabilities, offsets and token counts alike; only what the cache served
    # differs (the second call finds both prompts cached)
    assert uncached(first) == uncached(second)
    assert sum(c.cached_prompt_tokens for row in second for c in row) > sum(
        c.cached_prompt_tokens for row in first for c in row)


def test_first_samples_do_not_depend_on_n(engine: LlamaCppEngine) -> None:
    four = texts(extend(engine, [PROMPT], 4, seed=3))[0]
    two = texts(extend(engine, [PROMPT], 2, seed=3))[0]
    assert four[:2] == two
    assert len(set(four)) > 1  # the samples of one prefix differ from each other


def test_first_sample_picks_the_later_samples(engine: LlamaCppEngine) -> None:
    check_first_sample_picks_the_later_samples(engine, [PROMPT, OTHER])


def test_another_seed_gives_other_samples(engine: LlamaCppEngine) -> None:
    a = texts(extend(engine, [PROMPT], 4, seed=1))[0]
    b = texts(extend(engine, [PROMPT], 4, seed=2))[0]
    assert a != b


def test_samples_do_not_depend_on_the_other_prefixes_of_a_call(engine: LlamaCppEngine) -> None:
    # Each sample has its own random stream and its own KV sequence; llama.cpp's CPU kernels
    # compute each sequence's row alike whatever else the batch holds, so texts match exactly.
    alone = texts(extend(engine, [PROMPT], 3, max_tokens=20, seed=7))[0]
    first = texts(extend(engine, [PROMPT, OTHER], 3, max_tokens=20, seed=7))
    second = texts(extend(engine, [OTHER, PROMPT], 3, max_tokens=20, seed=7))
    assert first[0] == second[1] == alone
    assert first[1] == second[0]


def test_outputs_do_not_depend_on_the_cache_history(engine: LlamaCppEngine) -> None:
    fresh = LlamaCppEngine(n_ctx=1024, n_threads=THREADS)
    try:
        expected = texts(extend(fresh, [OTHER], 2, seed=9))
    finally:
        fresh.free()
    extend(engine, [PROMPT + " Tom"], 2, seed=1)  # leaves a different shared sequence behind
    assert texts(extend(engine, [OTHER], 2, seed=9)) == expected


# -- greedy decoding against llama-cpp-python's high-level API ---------------------------------
def test_greedy_matches_the_high_level_api(engine: LlamaCppEngine, greedy: Continuation) -> None:
    # one thread: a one-row call (each generated token here) then computes as in any call
    reference = llama_cpp.Llama(model_path=str(engine.path), n_ctx=2048, verbose=False,
                                logits_all=False, flash_attn=True, n_threads=THREADS,
                                n_batch=engine.rows_per_call)
    try:
        out = reference.create_completion(PROMPT, max_tokens=GREEDY_TOKENS, temperature=0,
                                          repeat_penalty=1.0, top_k=1)
    finally:
        reference.close()
    assert out["choices"][0]["text"] == greedy.text
    assert out["usage"]["prompt_tokens"] == greedy.prompt_tokens
    assert out["usage"]["completion_tokens"] == greedy.generated_tokens


def test_greedy_logprobs_match_the_high_level_logits(engine: LlamaCppEngine,
                                                     greedy: Continuation) -> None:
    prompt = engine.tokenize(PROMPT)
    tokens = engine.tokenize(PROMPT + greedy.text)
    assert tokens[:len(prompt)] == prompt
    # compare only as far as the text re-tokenises into the generated tokens
    # (the greedy text ends in "\n", "\n", which re-tokenises as one "\n\n")
    generated = tokens[len(prompt):]
    reference = llama_cpp.Llama(model_path=str(engine.path), n_ctx=512, verbose=False,
                                logits_all=True, flash_attn=True, n_threads=THREADS,
                                n_batch=engine.rows_per_call)
    try:
        lengths = [len(reference.detokenize([t]).decode("utf-8")) for t in generated]
        ends = [int(e) for e in np.cumsum(lengths)]
        same = common_length(ends, [*greedy.token_offsets[1:], len(greedy.text)])
        assert same >= 3
        reference.eval(tokens[:len(prompt) + same])
        logits = np.array(reference.scores[len(prompt) - 1:len(prompt) + same - 1],
                          dtype=np.float64)
    finally:
        reference.close()
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    expected = log_softmax[np.arange(same), generated[:same]]
    assert np.allclose(greedy.token_logprobs[:same], expected, rtol=0, atol=1e-5)
    # greedy picks the most likely token at every step
    assert (np.argmax(logits, axis=-1) == generated[:same]).all()


# -- the attention kernel ------------------------------------------------------------------------
def test_the_plain_kernel_is_reproducible_from_the_same_start(engine: LlamaCppEngine) -> None:
    plain = LlamaCppEngine(n_ctx=1024, n_threads=THREADS, flash_attn="off")
    try:
        assert plain.flash_attn == "off" and engine.flash_attn == "auto"
        first = extend(plain, [PROMPT, OTHER], 2, max_tokens=16, seed=3)
        plain.clear_cache()
        second = extend(plain, [PROMPT, OTHER], 2, max_tokens=16, seed=3)
        assert uncached(first) == uncached(second)
        # the same model through another kernel: next-token log-probs within the kernels'
        # rounding (up to ~0.2 nats measured, see the module docstring), far below the
        # gap between a likely and an unlikely token
        likely = [" Tom", " 3", " The"]
        [flash_read] = engine.next_token_logprobs_sync([PROMPT], [*likely, " banana"])
        [plain_read] = plain.next_token_logprobs_sync([PROMPT], [*likely, " banana"])
        for candidate in likely:
            assert abs(flash_read.logprobs[candidate] - plain_read.logprobs[candidate]) < 0.5
        # and the kernel was applied: the two round differently (by ~0.1 nats here)
        assert any(flash_read.logprobs[c] != plain_read.logprobs[c] for c in likely)
        assert plain_read.logprobs[" banana"] < min(plain_read.logprobs[c] for c in likely) - 5
    finally:
        plain.free()


def test_the_kernel_comes_from_the_environment_or_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("TTSCALE_FLASH_ATTN", "off")
    plain = LlamaCppEngine(n_ctx=256, n_threads=THREADS)
    try:
        assert plain.flash_attn == "off"
    finally:
        plain.free()
    with pytest.raises(ConfigError, match="flash_attn 'of'.*Did you mean 'off'"):
        LlamaCppEngine(n_ctx=256, flash_attn="of")


# -- stop strings and lengths ------------------------------------------------------------------
def test_stop_string_cuts_the_greedy_text(engine: LlamaCppEngine, greedy: Continuation) -> None:
    check_stop_string_cuts_the_text(engine, PROMPT, greedy, GREEDY_TOKENS, 1e-9)


def test_the_earliest_of_several_stop_strings_wins(engine: LlamaCppEngine,
                                                   greedy: Continuation) -> None:
    text = greedy.text
    early = text[len(text) // 3:len(text) // 3 + 4]
    late = text[2 * len(text) // 3:2 * len(text) // 3 + 4]
    assert 0 < text.find(early) < text.find(late)
    [[c]] = extend(engine, [PROMPT], stop=[late, "never in this text", early],
                   max_tokens=GREEDY_TOKENS, temperature=0.0)
    assert c.text == text[:text.find(early)]
    assert c.finish_reason == "stop" and c.stop_string == early


def test_stop_string_at_the_start_gives_empty_text(engine: LlamaCppEngine,
                                                   greedy: Continuation) -> None:
    [[c]] = extend(engine, [PROMPT], stop=[greedy.text[:4]], max_tokens=GREEDY_TOKENS,
                   temperature=0.0)
    assert c.text == "" and c.finish_reason == "stop" and c.stop_string == greedy.text[:4]
    assert c.token_offsets == () and c.token_logprobs == () and c.generated_tokens >= 1


def test_absent_stop_string_changes_nothing(engine: LlamaCppEngine, greedy: Continuation) -> None:
    [[c]] = extend(engine, [PROMPT], stop=["never in this text", ""],
                   max_tokens=GREEDY_TOKENS, temperature=0.0)
    assert c.text == greedy.text and c.finish_reason == "length" and c.stop_string is None


def test_max_tokens_ends_with_length(engine: LlamaCppEngine, greedy: Continuation) -> None:
    check_max_tokens_ends_with_length(engine, PROMPT, greedy, 1e-9)
    for row in extend(engine, [PROMPT, OTHER], 3, max_tokens=4, seed=2):
        for c in row:
            assert c.finish_reason in ("length", "eos")
            if c.finish_reason == "length":
                assert c.generated_tokens == 4


# -- prompt caching is reported honestly -------------------------------------------------------
def test_cached_prompt_tokens_are_honest() -> None:
    policy = LlamaCppEngine(n_ctx=1024, n_threads=THREADS)
    tree = policy._batcher.tree

    def call(prefixes: list[str], n: int) -> tuple[list[list[Continuation]], list[int]]:
        """Each prefix should compute what the cache does not hold (and always its last
        token, for its logits), charged to its first sample; and every prompt token the
        engine decoded is reported, once."""
        lists = [policy.tokenize(p) for p in prefixes]
        expected = [len(t) - min(tree.match(t).length, len(t) - 1) for t in lists]
        decoded = policy.stats["computed_prompt_tokens"]
        rows = extend(policy, prefixes, n, max_tokens=8, seed=4)
        computed = [sum(c.computed_prompt_tokens for c in row) for row in rows]
        assert computed == expected
        assert sum(computed) == policy.stats["computed_prompt_tokens"] - decoded
        for prefix, row in zip(prefixes, rows, strict=True):
            assert row[0].computed_prompt_tokens >= 1  # each prefix computes its last token
            assert all(c.cached_prompt_tokens == c.prompt_tokens for c in row[1:])
            for c in row:
                check_continuation(policy, prefix, c, 8)
        return rows, computed

    try:
        prompt = policy.tokenize(PROMPT)
        # a fresh engine computes the whole prompt once, for the first sample only
        [row], _ = call([PROMPT], 3)
        assert [c.cached_prompt_tokens for c in row] == [0, len(prompt), len(prompt)]

        # the next step extends a sample: its cached tokens (prompt and generated text) are
        # reused, and only where the text re-tokenises differently is computed again
        step = PROMPT + row[0].text
        _, [computed] = call([step], 2)
        assert computed <= 3

        # two continuations of the step, then a mix with another problem: each computes only
        # its own new tokens
        _, computed = call([step + " Tom", step + " So"], 2)
        assert all(c <= 3 for c in computed)
        _, computed = call([step + " Tom", OTHER, step], 2)
        assert computed[1] >= len(policy.tokenize(OTHER)) - 3  # OTHER is new but for "Problem:"
        assert computed[0] <= 2 and computed[2] == 1
    finally:
        policy.free()


# -- more samples than sequence slots, and a small cache ---------------------------------------
def test_more_samples_than_slots_are_decoded_in_waves(engine: LlamaCppEngine,
                                                      small_engine: LlamaCppEngine) -> None:
    assert small_engine.n_seq_max == 4
    [row] = extend(small_engine, [PROMPT], 7, max_tokens=10, seed=6)
    assert len(row) == 7
    assert [c.text for c in row] == texts(extend(engine, [PROMPT], 7, max_tokens=10, seed=6))[0]
    assert [c.text for c in row] == texts(extend(small_engine, [PROMPT], 7, max_tokens=10,
                                                 seed=6))[0]
    # waves of three (four sequences, one of them the decode loop's scratch): the first
    # sample of each later wave computes the prefix's last token again
    prompt_tokens = len(small_engine.tokenize(PROMPT))
    assert [c.computed_prompt_tokens for c in row[1:]] == [0, 0, 1, 0, 0, 1]
    assert all(c.prompt_tokens == prompt_tokens for c in row)


def test_samples_that_together_overflow_the_cache_run_in_turn(
        small_engine: LlamaCppEngine) -> None:
    # a 240-token prompt in a 256-token cache: each sample fits alone, three at once do not
    prefix = ("Problem: " + " ".join(f"Box {i} holds {i + 2} marbles." for i in range(24))
              + " How many marbles are there in all?\nSolution:\nStep 1:")
    length = len(small_engine.tokenize(prefix))
    budget = small_engine.n_ctx - length - 1  # the most one sample can generate
    assert length + 3 * budget > small_engine.n_ctx
    [row] = extend(small_engine, [prefix], 3, max_tokens=40, temperature=0.0)
    assert len({c.text for c in row}) == 1
    for c in row:
        assert c.prompt_tokens == length
        assert c.finish_reason == "length" and c.generated_tokens == budget
        assert len(c.token_logprobs) == budget


# -- errors ------------------------------------------------------------------------------------
def test_missing_model_file(tmp_path) -> None:
    path = tmp_path / "absent.gguf"
    with pytest.raises(ModelLoadError, match="does not exist") as raised:
        LlamaCppEngine(path)
    assert str(path) in str(raised.value)


def test_file_that_is_not_gguf(tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b'{"__metadata__": {}}' + bytes(64))
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        LlamaCppEngine(path)


def test_truncated_gguf_file(tmp_path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"not a model" * 4)
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppEngine(path)


def test_folder_instead_of_a_file(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="folder"):
        LlamaCppEngine(tmp_path)


@pytest.mark.parametrize("bad", [
    {"n": 0}, {"max_tokens": 0}, {"temperature": -0.5}, {"top_p": 0.0}, {"top_p": 1.5},
])
def test_bad_arguments_are_value_errors(engine: LlamaCppEngine, bad: dict) -> None:
    with pytest.raises(ValueError):
        extend(engine, [PROMPT], **bad)


def test_one_string_for_prefixes_is_a_type_error(engine: LlamaCppEngine) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        extend(engine, PROMPT)  # type: ignore[arg-type]


def test_errors_leave_the_engine_usable(small_engine: LlamaCppEngine) -> None:
    before = texts(extend(small_engine, [PROMPT], 2, max_tokens=8, seed=8))
    too_long = "apple " * (small_engine.n_ctx + 10)
    assert len(small_engine.tokenize(too_long)) > small_engine.n_ctx
    with pytest.raises(ContextLengthError, match="does not fit"):
        extend(small_engine, [PROMPT, too_long], 2, max_tokens=8)
    with pytest.raises(EngineError, match="empty prefix"):
        extend(small_engine, [PROMPT, ""], 2, max_tokens=8)
    assert texts(extend(small_engine, [PROMPT], 2, max_tokens=8, seed=8)) == before


# -- asyncio -----------------------------------------------------------------------------------
def test_concurrent_calls_from_one_event_loop(engine: LlamaCppEngine) -> None:
    check_concurrent_calls_from_one_event_loop(engine, [PROMPT, OTHER], 8)
