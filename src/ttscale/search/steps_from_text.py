"""Turning engine continuations into steps, log-probabilities included."""

from __future__ import annotations

from bisect import bisect_right

from ttscale.engines.base import Continuation
from ttscale.steps import Step, writes_final_answer
from ttscale.thoughts import (
    DEFAULT_SEGMENTATION,
    ThinkingFormat,
    ThoughtSegmentation,
    segment_thought,
    split_thoughts,
)

Span = tuple[int, int, bool]  # start, end, in the thought


def split_continuation(
    continuation: Continuation, delimiter: str, thinking: ThinkingFormat | None = None,
    segmentation: ThoughtSegmentation = DEFAULT_SEGMENTATION,
) -> list[Step]:
    """Split a whole solution into steps at the delimiter, handing each step the generated
    tokens that start inside it (tokens that start in a delimiter go to the step before).
    Steps after the first one that writes a final answer are dropped: that step ends the path.

    With a reasoning policy's ``thinking`` format, the thought comes first as steps of merged
    paragraphs (``segmentation``; the markers stay in the first and last thought step's text)
    and only the answer part is split at the delimiter; a ``\\boxed`` inside the thought
    does not end the path.
    """
    text = continuation.text
    spans = _spans(text, delimiter, thinking, segmentation)
    if not spans:
        return []
    starts = [start for start, _, _ in spans]
    per_piece: list[list[float]] = [[] for _ in spans]
    token_counts = [0] * len(spans)
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
        total = sum(end - start for start, end, _ in spans) or 1
        token_counts = [round(continuation.generated_tokens * (end - start) / total)
                        for start, end, _ in spans]
        has_logprobs = False
    steps: list[Step] = []
    for (start, end, thought), count, lps in zip(spans, token_counts, per_piece, strict=True):
        piece = text[start:end]
        steps.append(Step(piece, count, tuple(lps) if has_logprobs else None, thought))
        if not thought and writes_final_answer(piece):
            break
    return steps


def _spans(text: str, delimiter: str, thinking: ThinkingFormat | None,
           segmentation: ThoughtSegmentation) -> list[Span]:
    if thinking is None:
        return _delimited(text, 0, delimiter)
    split = split_thoughts(text, thinking)
    if split.state == "none":
        return _delimited(text, 0, delimiter)
    thought = segment_thought(text, split.thought_start, split.thought_end, segmentation)
    if thought:  # the opening marker joins the first step, the closing one the last
        thought[0] = (0, thought[0][1])
        thought[-1] = (thought[-1][0], split.answer_start if split.state == "closed"
                       else len(text))
    return [(a, b, True) for a, b in thought] + _delimited(text, split.answer_start, delimiter)


def _delimited(text: str, start: int, delimiter: str) -> list[Span]:
    """The non-blank pieces of ``text[start:]`` between delimiters, as they stand."""
    spans: list[Span] = []
    position = start
    for raw in text[start:].split(delimiter):
        if raw.strip():
            spans.append((position, position + len(raw), False))
        position += len(raw) + len(delimiter)
    return spans


def single_step(continuation: Continuation, thought: bool = False) -> Step:
    """A continuation that was stopped at the step delimiter is one step."""
    return Step(continuation.text, continuation.generated_tokens, continuation.token_logprobs,
                thought)
