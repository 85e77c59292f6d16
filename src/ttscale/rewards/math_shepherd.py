"""Math-Shepherd (peiyi9979/math-shepherd-mistral-7b-prm): the format of its model card.

Input: ``question + " " + steps``, each step followed by the tag ``" ки"`` and steps joined by
a newline (``"... ки\\nStep 2: ... ки"``), tokenized with BOS. Read-out: the LM's logits at
every tag token, restricted to the two label tokens ``encode("+ -")[1:]`` (648 and 387 in
the Mistral tokenizer); softmax over those two; the probability of ``+`` is the score. The
tag id is the last id of ``encode("ки")`` (12902)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.rewards.hf_prm import EncodedSolution, HFProcessRewardModel

STEP_TAG = "ки"
GOOD, BAD = "+", "-"
# index of GOOD in the [GOOD, BAD] pair read out (vLLM's returned_token_ids keep that order)
POSITIVE_LABEL = 0


def prm_input(problem: str, steps: Sequence[str]) -> str:
    """The card's text. A tag written inside the problem or a step would be read as a step
    end, so it is removed there."""
    clean = [step.replace(STEP_TAG, "").strip() for step in steps]
    return f"{problem.replace(STEP_TAG, '').strip()} " + "\n".join(
        f"{step} {STEP_TAG}" for step in clean)


class MathShepherdPRM(HFProcessRewardModel):
    format_name = "math-shepherd"
    architectures = ("MistralForCausalLM", "LlamaForCausalLM")
    model_types = ("mistral", "llama")
    uses_lm_head = True

    def load_head(self, folder: Path, config: dict[str, Any]) -> None:
        self.tag_id = self.tokenizer.encode(STEP_TAG)[-1]
        self.candidate_ids = self.tokenizer.encode(f"{GOOD} {BAD}")[1:]
        if len(self.candidate_ids) != 2:
            raise ValueError(f"the tokenizer at {folder} does not write '{GOOD} {BAD}' as "
                             f"BOS + two tokens (got {self.candidate_ids})")
        # only the two label rows of the LM head are ever needed
        head = self.model.get_output_embeddings()
        self.label_weights = head.weight[self.candidate_ids].detach().float()

    def encode(self, problem: str, steps: Sequence[str]) -> EncodedSolution:
        return self.encode_text(prm_input(problem, steps))

    def encode_text(self, text: str) -> EncodedSolution:
        """The input text's ids (with BOS), read at every tag (a PRM server receives the text)."""
        ids = self.tokenizer.encode(text)
        positions = [i for i, token in enumerate(ids) if token == self.tag_id]
        return EncodedSolution(ids, positions)

    def read(self, hidden):
        logits = hidden @ self.label_weights.T
        return self._torch.softmax(logits, dim=-1)[:, POSITIVE_LABEL]
