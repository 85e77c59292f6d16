"""Reasoning families end to end on tiny randomly initialised models of their real
architectures (Qwen2 for DeepSeek-R1-Distill-Qwen, Qwen3), with their tokenizers and chat
templates saved in the model folders as the published checkpoints ship them: the template
is read from the model, the thought is found where the family puts it, and a trace that
never closes its thought answers nothing."""

from __future__ import annotations

import asyncio

import pytest

from ttscale.cli.options import prompt_format
from ttscale.settings import SearchSettings

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

PROBLEM = "What is 2 + 3?"


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """{family: the HF engine over its tiny model}."""
    from transformers import (
        AutoTokenizer,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    from prm_assets import _tiny, tokenizer_dirs
    from ttscale.engines.hf import HFEngine

    dirs = tokenizer_dirs()
    torch.manual_seed(0)
    engines = {}
    for name, config_cls, model_cls in (("r1-distill", Qwen2Config, Qwen2ForCausalLM),
                                        ("qwen3", Qwen3Config, Qwen3ForCausalLM)):
        folder = tmp_path_factory.mktemp(name)
        tokenizer = AutoTokenizer.from_pretrained(dirs[name])
        extra = {"head_dim": 8} if name == "qwen3" else {}
        model_cls(_tiny(config_cls, len(tokenizer), **extra)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        engines[name] = HFEngine(folder, max_batch=4)
    yield engines
    for engine in engines.values():
        asyncio.run(engine.close())


def solve(policy, thinking: str = "auto"):
    from ttscale.run.solve import solve_async

    prompt = prompt_format("chat", None, policy, thinking)
    result = asyncio.run(solve_async(
        PROBLEM, policy=policy, method="majority", n=2, scorer=None,
        settings=SearchSettings(max_solution_tokens=12), prompt=prompt, keep=2))
    return prompt, result


def test_r1_distill_thinks_from_its_own_template_and_an_open_thought_answers_nothing(families):
    policy = families["r1-distill"]
    assert "<｜Assistant｜><think>" in policy.info.chat_template  # read from the model folder
    prompt, result = solve(policy)
    assert prompt.render(PROBLEM).endswith("<｜Assistant｜><think>\n")
    assert prompt.thinking_format.opened_by_prompt
    assert result.ranked
    for solution in result.ranked:  # 12 random tokens never close the thought
        assert solution.thought_steps == len(solution.steps) and solution.answer is None
    assert result.answer is None


def test_qwen3_lets_the_model_open_its_thought_and_off_closes_it_in_the_prompt(families):
    policy = families["qwen3"]
    prompt, result = solve(policy)
    assert prompt.render(PROBLEM).endswith("<|im_start|>assistant\n")
    assert not prompt.thinking_format.opened_by_prompt
    # random tokens do not open a thought: the text is read as an answer part
    assert all(s.thought_steps == 0 for s in result.ranked)
    off, _ = solve(policy, "off")
    assert off.render(PROBLEM).endswith("<think>\n\n</think>\n\n")
    assert off.thinking_format is None
