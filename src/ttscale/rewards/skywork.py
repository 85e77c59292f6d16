"""Skywork-o1-Open-PRM-Qwen-2.5 (1.5B / 7B): the format of its reference inference code.

Input, built piece by piece as the reference does (not by tokenizing one joined string, which
would merge tokens across step boundaries differently): ``encode(bos + problem + "\\n")``,
then for each step ``encode(step)`` followed by the id of ``"\\n"``. Read-out: the value head
(``v_head.summary``, a Linear from the hidden size to 1) on the last hidden state at each of
those newline tokens; the sigmoid of that value is the step's score.

The reference splits a response into steps at every newline; here each of the search's steps
is one step, whatever newlines it holds inside, and its end is the read position. Steps are
stripped of surrounding whitespace, as the split leaves them. The checkpoint's dropout is
inactive at inference and is left out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.rewards.hf_prm import EncodedSolution, HFProcessRewardModel, load_head_weights

STEP_TOKEN = "\n"


class SkyworkPRM(HFProcessRewardModel):
    format_name = "skywork"
    architectures = ("Qwen2ForPrmModel",)
    model_types = ("qwen2",)

    def load_head(self, folder: Path, config: dict[str, Any]) -> None:
        torch = self._torch
        weights = load_head_weights(folder, "v_head.summary.")
        head = torch.nn.Linear(self.backbone.config.hidden_size, 1)
        head.load_state_dict({k: v.float() for k, v in weights.items()})
        self.head = head.to(self.device).float().eval()
        self.step_token_id = self.tokenizer.encode(STEP_TOKEN)[-1]
        # the reference prefixes the problem with the BOS token's text; Qwen tokenizers that
        # define none get nothing
        self.bos_text = self.tokenizer.bos_token or ""

    def encode(self, problem: str, steps: Sequence[str]) -> EncodedSolution:
        ids = self.tokenizer.encode(self.bos_text + problem + STEP_TOKEN)
        positions = []
        for step in steps:
            ids += self.tokenizer.encode(step.strip()) + [self.step_token_id]
            positions.append(len(ids) - 1)
        return EncodedSolution(ids, positions)

    def read(self, hidden):
        return self._torch.sigmoid(self.head(hidden)[:, 0])
