"""Turning engine continuations into steps, log-probabilities included."""

from __future__ import annotations

from bisect import bisect_right

from ttscale.engines.base import Continuation
from ttscale.steps import Step, writes_final_answer


def split_continuation(continuation: Continuation, delimiter: str) -> list[Step]:
    """Split a whole solution into steps at the delimiter, handing each step the generated
    tokens that start inside it (tokens that start in a delimiter go to the step before).
    Steps after the first one that writes a final answer are dropped: that step ends the path.
    """
    text = continuation.text
    starts: list[int] = []  # start offset of each non-empty piece
    pieces: list[str] = []
    position = 0
    for raw in text.split(delimiter):
        if raw.strip():
            starts.append(position)
            pieces.append(raw)
        position += len(raw) + len(delimiter)
    if not pieces:
        return []
    per_piece: list[list[float]] = [[] for _ in pieces]
    token_counts = [0] * len(pieces)
    logprobs, offsets = continuation.token_logprobs, continuation.token_offsets
    if offsets is not None and len(offsets) <= continuation.generated_tokens:
        for k, offset in enumerate(offsets):
            piece = max(0, bisect_right(starts, offset) - 1)
            token_counts[piece] += 1
            if logprobs is not None and k < len(logprobs):
                per_piece[piece].append(logprobs[k])
        # a matched stop string's tokens and the end-of-sequence token have no offset: they
        # were generated after the text, so the last step paid for them
        token_counts[-1] += continuation.generated_tokens - len(offsets)
        has_logprobs = logprobs is not None
    else:  # no offsets: share the tokens out by length, and drop log-probs we cannot place
        total = sum(len(p) for p in pieces) or 1
        token_counts = [round(continuation.generated_tokens * len(p) / total) for p in pieces]
        has_logprobs = False
    steps: list[Step] = []
    for piece, count, lps in zip(pieces, token_counts, per_piece, strict=True):
        steps.append(Step(piece, count, tuple(lps) if has_logprobs else None))
        if writes_final_answer(piece):
            break
    return steps


def single_step(continuation: Continuation) -> Step:
    """A continuation that was stopped at the step delimiter is one step."""
    return Step(continuation.text, continuation.generated_tokens, continuation.token_logprobs)
