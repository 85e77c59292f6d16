"""The text of the hf engine's samples, token by token: detokenizing a window that starts a few
tokens back (so spaces and merges that depend on earlier tokens come out right), stopping at
a stop string, an end token or the token budget, and the final
:class:`~ttscale.engines.base.Continuation`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ttscale.engines.base import Continuation, FinishReason

# prompt tokens decoded before the first new token, so that a tokenizer which drops a leading
# space at the start of a text (SentencePiece) keeps it at the start of a continuation
DETOKENIZE_CONTEXT = 6


@dataclass
class DecodingSample:
    """One continuation being decoded: its tokens, its text so far and its bookkeeping."""

    prefix_index: int
    sample_index: int
    rng: np.random.Generator
    budget: int
    context: list[int]  # the last prompt tokens, then the generated ones, for detokenizing
    read: int  # tokens of ``context`` whose text is in ``text``
    start: int = 0  # where the detokenizing window starts in ``context``
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None
    stop_string: str | None = None
    cut: int | None = None  # length of the text to keep when a stop string was hit


def new_sample(prefix_index: int, sample_index: int, rng: np.random.Generator, budget: int,
               prompt: list[int]) -> DecodingSample:
    context = prompt[-DETOKENIZE_CONTEXT:]
    return DecodingSample(prefix_index, sample_index, rng, budget, list(context), len(context))


class SampleText:
    """Reads sampled tokens into a sample's text with the model's tokenizer; ``eos`` are the
    tokens that end a sequence."""

    def __init__(self, tokenizer, eos: set[int]) -> None:
        self.tokenizer = tokenizer
        self.eos = eos

    def accept(self, sample: DecodingSample, token: int, logprob: float,
               stops: list[str]) -> None:
        """Take a sampled token into a sample and decide whether the sample is finished."""
        sample.tokens.append(token)
        if token in self.eos:  # like llama.cpp: counted as generated, with no text or logprob
            sample.finish = "eos"
            return
        sample.logprobs.append(logprob)
        sample.offsets.append(len(sample.text))
        sample.context.append(token)
        previous = len(sample.text)
        sample.text += self._new_text(sample)
        if stops and len(sample.text) > previous:
            # a new stop string ends in the new text, so starts at most its length before it
            window = max(0, previous - max(len(s) for s in stops) + 1)
            hits = [(at, s) for s in stops if (at := sample.text.find(s, window)) >= 0]
            if hits:
                sample.cut, sample.stop_string = min(hits)
                sample.finish = "stop"
                return
        if len(sample.tokens) >= sample.budget:
            sample.finish = "length"

    def continuation(self, sample: DecodingSample, prompt_tokens: int,
                     cached: int) -> Continuation:
        if sample.cut is None and sample.read < len(sample.context):
            sample.text += self._new_text(sample, final=True)  # a trailing partial character
        keep = len(sample.text) if sample.cut is None else sample.cut
        # tokens that start inside or after the stop string are dropped
        kept = sum(1 for offset in sample.offsets if offset < keep)
        return Continuation(
            text=sample.text[:keep],
            finish_reason=sample.finish or "length",
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            generated_tokens=len(sample.tokens),
            token_logprobs=tuple(sample.logprobs[:kept]),
            token_offsets=tuple(sample.offsets[:kept]),
            stop_string=sample.stop_string,
        )

    def _new_text(self, sample: DecodingSample, final: bool = False) -> str:
        """The text that the tokens after ``read`` add. Detokenizing a window that starts a few
        tokens back keeps the spaces and merges that depend on the tokens before; text that
        ends in an incomplete character waits for the next token (unless ``final``)."""
        window = sample.context[sample.start:]
        before = self._decode(window[:sample.read - sample.start])
        after = self._decode(window)
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        sample.start, sample.read = sample.read, len(sample.context)
        return after[len(before):]

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
