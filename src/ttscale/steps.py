"""Reasoning steps: the unit that the policy writes and a scorer scores."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_STEP_DELIMITER = "\n\n"


@dataclass(frozen=True)
class Step:
    """One reasoning step. ``token_logprobs`` come from the engine when it gives them; the
    policy-confidence scorer reads them, text-only scorers ignore them. ``thought``: the step
    lies in a reasoning policy's thought (``thoughts.py``), not in its answer."""

    text: str
    generated_tokens: int = 0
    token_logprobs: tuple[float, ...] | None = None
    thought: bool = False


def writes_final_answer(text: str) -> bool:
    """A step that writes ``\\boxed`` ends its path."""
    return "\\boxed" in text or "\\fbox" in text
