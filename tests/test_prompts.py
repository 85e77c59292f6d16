"""Prompt formats: what the policy sees, and the step settings each format implies."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttscale.errors import ConfigError
from ttscale.prompts import PromptFormat, resolve_chat_template, system_prompt
from ttscale.settings import SearchSettings
from ttscale.thoughts import THINK_TAGS


class TestFewShot:
    def test_problem_goes_last_and_steps_are_lines(self):
        prompt = PromptFormat().render("  What is 2 + 3?\n")
        assert prompt.endswith("Problem: What is 2 + 3?\nSolution:\n")
        assert prompt.count("Problem:") >= 3  # the shots come first
        assert "\\boxed{" in prompt and "\nStep 2:" in prompt

    def test_settings_take_the_format_stops_and_delimiter(self):
        settings = PromptFormat().apply(SearchSettings())
        assert settings.delimiter == "\n"
        assert settings.step_stops == ("\n", "\nProblem:")
        chosen = PromptFormat().apply(SearchSettings(step_delimiter="\n\n"))
        assert chosen.delimiter == "\n\n"


    def test_the_shipped_examples_vary_in_length(self):
        # with two-step examples only, the embedded policy invented a second step for
        # one-operation problems; the shots show one, two and three steps
        shots = PromptFormat().text.split("Problem:")[1:-1]
        steps = {shot.count("\nStep ") for shot in shots}
        assert {1, 2, 3} <= steps
        for shot in shots:
            assert shot.rstrip().endswith("}.") and "The answer is \\boxed{" in shot

    def test_a_users_fewshot_file_replaces_the_examples(self, tmp_path):
        from ttscale.cli.options import prompt_format

        path = tmp_path / "shots.txt"
        path.write_text("Q: 1 + 1\nA: 2\n\nQ: {problem}\nA:", encoding="utf-8")
        prompt = prompt_format(f"fewshot:{path}", None, None)
        assert prompt.kind == "fewshot"
        assert prompt.render(" 2 + 2 ") == "Q: 1 + 1\nA: 2\n\nQ: 2 + 2\nA:"
        path.write_text("no placeholder", encoding="utf-8")
        with pytest.raises(ConfigError, match="no {problem} placeholder"):
            prompt_format(f"fewshot:{path}", None, None)
        with pytest.raises(ConfigError, match="not found"):
            prompt_format(f"fewshot:{tmp_path / 'missing.txt'}", None, None)

    def test_a_run_made_with_other_examples_is_another_run(self):
        from ttscale.engines.base import ModelInfo
        from ttscale.run.runner import RunConfig, fingerprint

        info = ModelInfo(name="m", parameters=1)
        shipped = fingerprint(RunConfig(), info, PromptFormat())
        other = fingerprint(RunConfig(), info, PromptFormat(fewshot="Q: {problem}\nA:"))
        assert shipped["prompt"] != other["prompt"]
        assert shipped == fingerprint(RunConfig(), info, PromptFormat())


class TestChat:
    def test_chatml_renders_the_paper_system_prompt(self):
        template = resolve_chat_template("chatml", None)
        prompt = PromptFormat(kind="chat", chat_template=template).render("What is 2 + 3?")
        assert system_prompt() == ("Please reason step by step, and put your final answer "
                                   "within \\boxed{}.")
        assert prompt == (f"<|im_start|>system\n{system_prompt()}<|im_end|>\n"
                          "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
                          "<|im_start|>assistant\n")
        settings = PromptFormat(kind="chat", chat_template=template).apply(SearchSettings())
        assert settings.delimiter == "\n\n" and settings.end_stops == ()

    def test_model_template_is_used_when_none_is_chosen(self):
        assert resolve_chat_template(None, "{{ messages[0].content }}") == (
            "{{ messages[0].content }}")

    def test_template_from_file(self, tmp_path):
        path = tmp_path / "t.jinja"
        path.write_text("{% for m in messages %}[{{ m.role }}]{% endfor %}")
        template = resolve_chat_template(str(path), None)
        assert PromptFormat(kind="chat", chat_template=template).render("x") == (
            "[system][user]")

    def test_template_cannot_reach_python(self):
        from jinja2.exceptions import SecurityError

        evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
        with pytest.raises(SecurityError):
            PromptFormat(kind="chat", chat_template=evil).render("x")

    def test_missing_template_and_unknown_names_are_clear(self):
        with pytest.raises(ConfigError, match="needs a chat template"):
            PromptFormat(kind="chat")
        with pytest.raises(ConfigError, match="neither a builtin"):
            resolve_chat_template("vicuna", None)
        with pytest.raises(ConfigError, match="unknown prompt format 'fewshots'"):
            PromptFormat(kind="fewshots")


# -- reasoning policies: thinking on and off ----------------------------------------------------
R1_BOS = "<｜begin▁of▁sentence｜>"
PROBLEM = "What is 2 + 3?"


@pytest.fixture(scope="module")
def family_tokenizers():
    from transformers import AutoTokenizer

    from prm_assets import tokenizer_dirs

    dirs = tokenizer_dirs()
    return {name: AutoTokenizer.from_pretrained(dirs[name]) for name in ("r1-distill", "qwen3")}


def _theirs(tokenizer, thinking: bool, bos: str) -> str:
    """The prompt as transformers renders the family's template."""
    return tokenizer.apply_chat_template(
        [{"role": "system", "content": system_prompt()}, {"role": "user", "content": PROBLEM}],
        tokenize=False, add_generation_prompt=True, enable_thinking=thinking, bos_token=bos)


class TestThinking:
    @pytest.mark.parametrize("mode", ["auto", "on", "off"])
    def test_qwen3_renders_as_its_template_with_the_switch(self, family_tokenizers, mode):
        tokenizer = family_tokenizers["qwen3"]
        ours = PromptFormat(kind="chat", chat_template=tokenizer.chat_template,
                            thinking=mode).render(PROBLEM)
        assert ours == _theirs(tokenizer, mode != "off", "")
        ids = tokenizer(ours).input_ids
        if mode == "off":  # the template's empty thought, as its two special tokens
            assert ours.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
            assert 151667 in ids and 151668 in ids
        else:
            assert ours.endswith("<|im_start|>assistant\n") and 151667 not in ids

    def test_r1_opens_the_thought_in_the_prompt(self, family_tokenizers):
        tokenizer = family_tokenizers["r1-distill"]
        prompt = PromptFormat(kind="chat", chat_template=tokenizer.chat_template,
                              bos_token=R1_BOS)
        ours = prompt.render(PROBLEM)
        assert ours == _theirs(tokenizer, True, R1_BOS)
        assert ours == f"{R1_BOS}{system_prompt()}<｜User｜>{PROBLEM}<｜Assistant｜><think>\n"
        ids = tokenizer(ours, add_special_tokens=False).input_ids
        assert ids[0] == 151646 and ids[-3:-1] == [151645, 151648]  # BOS … Assistant, <think>
        assert prompt.thinking_format.opened_by_prompt

    def test_r1_with_thinking_off_closes_the_thought_at_once(self, family_tokenizers):
        # R1's template has no switch: the empty thought Qwen3 writes when not thinking
        tokenizer = family_tokenizers["r1-distill"]
        prompt = PromptFormat(kind="chat", chat_template=tokenizer.chat_template,
                              bos_token=R1_BOS, thinking="off")
        assert prompt.render(PROBLEM) == _theirs(tokenizer, False, R1_BOS) + "\n</think>\n\n"
        assert prompt.render(PROBLEM).endswith("<｜Assistant｜><think>\n\n</think>\n\n")
        assert prompt.thinking_format is None

    def test_which_prompts_expect_a_thought(self):
        qwen3 = resolve_chat_template("qwen3", None)
        qwen25 = (Path(__file__).parent / "data" / "qwen2.5_chat_template.jinja").read_text()
        thinks = PromptFormat(kind="chat", chat_template=qwen3).thinking_format
        assert thinks == THINK_TAGS and not thinks.opened_by_prompt
        assert PromptFormat(kind="chat", chat_template=qwen3, thinking="off"
                            ).thinking_format is None
        assert PromptFormat(kind="chat", chat_template=qwen25).thinking_format is None
        assert PromptFormat(kind="chat", chat_template=qwen25, thinking="on"
                            ).thinking_format == THINK_TAGS
        assert PromptFormat().thinking_format is None  # the embedded model's few-shot prompt
        assert PromptFormat(thinking="on").thinking_format == THINK_TAGS
        with pytest.raises(ConfigError, match="thinking mode"):
            PromptFormat(thinking="maybe")

    def test_a_run_that_does_not_choose_a_mode_keeps_its_identity(self):
        from ttscale.engines.base import ModelInfo
        from ttscale.run.runner import RunConfig, fingerprint

        info = ModelInfo(name="m", parameters=1)
        config = RunConfig(methods=("majority",), budgets=(4,))
        assert "thinking" not in fingerprint(config, info, PromptFormat())["prompt"]
        assert fingerprint(config, info, PromptFormat(thinking="off")
                           )["prompt"]["thinking"] == "off"
