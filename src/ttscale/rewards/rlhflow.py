"""RLHFlow PRMs (Llama3.1-8B-PRM-Mistral-Data, -Deepseek-Data): the format of their cards.

Input: a multi-turn chat in the model's own chat template. The first user turn is
``problem + " " + step 1``, each later step is a user turn of its own, and every user turn is
answered by an assistant turn ``+``. Read-out: the LM's logits at the position that predicts
each assistant ``+`` (the reference code reads index -3 of the conversation cut after that
step), restricted to the ``+`` / ``-`` token ids (``encode(c)[-1]``); softmax over the two;
the probability of ``+`` is the step's score.

All steps are read from one forward pass over the whole conversation; causal attention
makes that equal to the reference's one pass per step (a test checks it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.rewards.hf_prm import EncodedSolution, HFProcessRewardModel

GOOD, BAD = "+", "-"


def conversation(problem: str, steps: Sequence[str]) -> list[dict[str, str]]:
    messages = []
    for k, step in enumerate(steps):
        text = f"{problem} {step.strip()}" if k == 0 else step.strip()
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": GOOD})
    return messages


class RLHFlowPRM(HFProcessRewardModel):
    format_name = "rlhflow"
    architectures = ("LlamaForCausalLM",)
    model_types = ("llama",)
    uses_lm_head = True

    def load_head(self, folder: Path, config: dict[str, Any]) -> None:
        self.good_id = self.tokenizer.encode(GOOD)[-1]
        self.bad_id = self.tokenizer.encode(BAD)[-1]
        if not self.tokenizer.chat_template:
            raise ValueError(f"the tokenizer at {folder} has no chat template")
        head = self.model.get_output_embeddings()
        self.label_weights = head.weight[[self.good_id, self.bad_id]].detach().float()

    def _ids(self, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)
        # the template writes BOS itself
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode(self, problem: str, steps: Sequence[str]) -> EncodedSolution:
        messages = conversation(problem, steps)
        ids = self._ids(messages, generation_prompt=False)
        positions = []
        for k in range(len(steps)):
            # the conversation up to step k's user turn plus the assistant header: its last
            # token is the one whose logits predict step k's label
            head = self._ids(messages[:2 * k + 1], generation_prompt=True)
            if ids[:len(head)] != head or ids[len(head)] != self.good_id:
                raise AssertionError(f"{self.format_name}: the chat template does not put the "
                                     f"label of step {k + 1} right after the assistant header")
            positions.append(len(head) - 1)
        return EncodedSolution(ids, positions)

    def read(self, hidden):
        logits = hidden @ self.label_weights.T
        return self._torch.softmax(logits, dim=-1)[:, 0]
