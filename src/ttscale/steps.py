"""Reasoning steps: the unit that the policy writes and a scorer scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_STEP_DELIMITER = "\n\n"


@dataclass(frozen=True)
class Step:
    """One reasoning step. ``token_logprobs`` come from the engine when it gives them; the
    policy-confidence scorer reads them, text-only scorers ignore them."""

    text: str
    generated_tokens: int = 0
    token_logprobs: tuple[float, ...] | None = None


def split_steps(text: str, delimiter: str = DEFAULT_STEP_DELIMITER) -> list[str]:
    """Split a whole solution into steps, dropping empty pieces."""
    return [piece.strip("\n") for piece in text.split(delimiter) if piece.strip()]


def join_steps(steps: Sequence[Step | str], delimiter: str = DEFAULT_STEP_DELIMITER) -> str:
    return delimiter.join(s.text if isinstance(s, Step) else s for s in steps)


def writes_final_answer(text: str) -> bool:
    """A step that writes ``\\boxed`` ends its path."""
    return "\\boxed" in text or "\\fbox" in text
