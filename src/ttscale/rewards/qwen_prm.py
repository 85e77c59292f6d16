"""Qwen2.5-Math-PRM (7B / 72B): the format of its model card.

Input: the model's chat template over three messages — the system prompt below, the problem
as the user turn, and the assistant turn made of the steps, each followed by ``<extra_0>``.
Read-out: the checkpoint's 2-label head (Linear → ReLU → Linear, weights ``score.0`` and
``score.2``) at every ``<extra_0>`` token; softmax over the two labels; the probability of
label 1 (correct) is the step's score.

The card loads the head with ``trust_remote_code``; ttscale applies the same head from the
checkpoint's weights instead, so no downloaded Python runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.rewards.hf_prm import EncodedSolution, HFProcessRewardModel, load_head_weights

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"
# the head's labels are [incorrect, correct]; vLLM's STEP pooler returns them in that order
POSITIVE_LABEL = 1


def conversation(problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
    """The card's messages. A step is stripped of surrounding whitespace (steps are split on
    blank lines, which the tag replaces) and may not itself contain the tag."""
    body = "".join(step.replace(STEP_TAG, "").strip() + STEP_TAG for step in steps)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": problem},
        {"role": "assistant", "content": body},
    ]


def chatml(messages: Sequence[dict[str, str]]) -> str:
    """The messages as Qwen2.5's chat template writes them when the first one is a system
    message (no generation prompt): one ``<|im_start|>role\\n...<|im_end|>\\n`` block each."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def prm_input(problem: str, steps: Sequence[str]) -> str:
    """The input text built without a tokenizer, as a PRM server is sent it; the same text as
    the chat template renders in :meth:`QwenMathPRM.encode`. A tag inside the problem would
    be read as a step end, so it is removed there."""
    return chatml(conversation(problem.replace(STEP_TAG, ""), steps))


class QwenMathPRM(HFProcessRewardModel):
    format_name = "qwen-prm"
    architectures = ("Qwen2ForProcessRewardModel",)
    model_types = ("qwen2",)

    def load_head(self, folder: Path, config: dict[str, Any]) -> None:
        torch = self._torch
        weights = load_head_weights(folder, "score.")
        hidden = self.backbone.config.hidden_size
        head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, 2))
        head.load_state_dict({k: v.float() for k, v in weights.items()})
        self.head = head.to(self.device).float().eval()
        self.tag_id = self.tokenizer.convert_tokens_to_ids(STEP_TAG)
        if self.tag_id is None or self.tag_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer at {folder} has no {STEP_TAG} token")
        if not self.tokenizer.chat_template:
            raise ValueError(f"the tokenizer at {folder} has no chat template")

    def render(self, problem: str, steps: Sequence[str]) -> str:
        return self.tokenizer.apply_chat_template(conversation(problem, steps), tokenize=False,
                                                  add_generation_prompt=False)

    def encode(self, problem: str, steps: Sequence[str]) -> EncodedSolution:
        return self.encode_text(self.render(problem.replace(STEP_TAG, ""), steps))

    def encode_text(self, text: str) -> EncodedSolution:
        """A rendered input's ids, read at every tag (a PRM server receives the text)."""
        ids = self.tokenizer.encode(text)
        positions = [i for i, token in enumerate(ids) if token == self.tag_id]
        return EncodedSolution(ids, positions)

    def read(self, hidden):
        return self._torch.softmax(self.head(hidden), dim=-1)[:, POSITIVE_LABEL]
