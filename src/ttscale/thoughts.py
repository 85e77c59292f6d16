"""Thoughts and answers apart: a reasoning policy (DeepSeek-R1 distills, Qwen3 in thinking
mode, QwQ) thinks between markers — ``<think>`` … ``</think>`` — and then writes its answer.
The answer is read from the part after the thought only; a trace cut off inside its thought
has no answer. A long thought is cut into steps a PRM can read: paragraphs merged up to a
length cap, the cap raised until the thought makes at most a set number of steps.

The split follows the reasoning parsers of vLLM and SGLang for these families: text before
``</think>`` is thought even when ``<think>`` is missing, because R1's chat template writes
the opening marker into the prompt (``opened``), not into the generated text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from ttscale.steps import Step

ThoughtState = Literal["none", "closed", "unclosed"]


@dataclass(frozen=True)
class ThinkingFormat:
    """A family's thought markers. ``opened_by_prompt``: the chat template ends the prompt
    with the opening marker (R1 distills), so the generated text starts inside the thought."""

    open: str = "<think>"
    close: str = "</think>"
    opened_by_prompt: bool = False


THINK_TAGS = ThinkingFormat()


@dataclass(frozen=True)
class ThoughtSplit:
    """A policy output split at its thought. Offsets index the original text: the thought
    is ``text[thought_start:thought_end]`` (markers excluded), the answer part starts at
    ``answer_start`` (after the closing marker). ``state``: ``none`` (no thought), ``closed``
    or ``unclosed`` (cut off inside the thought: no answer part)."""

    text: str
    state: ThoughtState
    thought_start: int = 0
    thought_end: int = 0
    answer_start: int = 0

    @property
    def thinking(self) -> str | None:
        return None if self.state == "none" else self.text[self.thought_start:self.thought_end]

    @property
    def answer(self) -> str:
        return "" if self.state == "unclosed" else self.text[self.answer_start:]


def split_thoughts(text: str, fmt: ThinkingFormat = THINK_TAGS,
                   opened: bool | None = None) -> ThoughtSplit:
    """Split ``text`` at its thought markers. ``opened``: the text starts inside a thought
    (default: the format's ``opened_by_prompt``)."""
    if opened is None:
        opened = fmt.opened_by_prompt
    start = 0
    stripped = len(text) - len(text.lstrip())
    if text.startswith(fmt.open, stripped):
        start, opened = stripped + len(fmt.open), True
    close = text.find(fmt.close, start)
    if close < 0:
        if not opened:
            return ThoughtSplit(text, "none")
        return ThoughtSplit(text, "unclosed", start, len(text), len(text))
    # a closing marker with no opening one: the prompt opened the thought (R1's template)
    return ThoughtSplit(text, "closed", start, close, close + len(fmt.close))


def without_markers(step: Step, fmt: ThinkingFormat) -> Step:
    """A thought step as a PRM reads it: its words, without the thought's markers."""
    if not step.thought:
        return step
    text = step.text.replace(fmt.open, "").replace(fmt.close, "").strip()
    return replace(step, text=text)


def step_in_thought(text: str, inside: bool, fmt: ThinkingFormat) -> tuple[bool, bool]:
    """For a policy writing step by step: (is this step part of the thought, is the text after
    it still inside the thought), given whether it began inside one. A step that opens the
    thought belongs to it; one that closes it does too, unless its answer follows the marker
    in the same step (then the answer is read from it)."""
    opens = not inside and text.lstrip().startswith(fmt.open)
    if not (inside or opens):
        return False, False
    close = text.find(fmt.close)
    if close < 0:
        return True, True
    return not text[close + len(fmt.close):].strip(), False


@dataclass(frozen=True)
class ThoughtSegmentation:
    """How a long thought becomes steps: paragraphs (blank-line separated; an oversized one
    is cut at line breaks, then at sentence ends) merged while a step stays within
    ``max_step_chars``; when that still makes more than ``max_steps`` steps, the cap rises to
    the thought's length over ``max_steps``. Characters, not tokens, so that segmenting needs
    no tokenizer (about four characters a token in English and LaTeX)."""

    max_step_chars: int = 2000
    max_steps: int = 40

    def __post_init__(self) -> None:
        if self.max_step_chars < 1 or self.max_steps < 1:
            raise ValueError("thought segmentation: max_step_chars and max_steps must be ≥ 1, "
                             f"not {self.max_step_chars} and {self.max_steps}")


DEFAULT_SEGMENTATION = ThoughtSegmentation()
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_LINE_BREAK = re.compile(r"\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _units(text: str, start: int, end: int, cap: int) -> list[tuple[int, int]]:
    """Spans of ``text[start:end]``'s paragraphs, oversized ones cut finer."""
    spans = _cut(text, start, end, _PARAGRAPH_BREAK)
    for finer in (_LINE_BREAK, _SENTENCE_END):
        spans = [piece for span in spans
                 for piece in (_cut(text, *span, finer) if span[1] - span[0] > cap else [span])]
    return spans


def _cut(text: str, start: int, end: int, separator: re.Pattern) -> list[tuple[int, int]]:
    """The non-blank spans between ``separator`` matches in ``text[start:end]``."""
    spans, position = [], start
    for match in separator.finditer(text, start, end):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, end))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _merge(spans: list[tuple[int, int]], cap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and b - merged[-1][0] <= cap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def segment_thought(text: str, start: int, end: int,
                    rule: ThoughtSegmentation = DEFAULT_SEGMENTATION) -> list[tuple[int, int]]:
    """The steps of the thought ``text[start:end]`` as spans of ``text``: contiguous, in order,
    each a stretch of whole paragraphs (the separators between merged paragraphs kept)."""
    cap = rule.max_step_chars
    units = _units(text, start, end, cap)
    steps = _merge(units, cap)
    while len(steps) > rule.max_steps:
        # a larger cap, at least the thought's length spread over the allowed steps; it
        # grows by a quarter each round, so a thought makes one step at worst
        cap = max(cap + cap // 4 + 1, -(-(end - start) // rule.max_steps))
        steps = _merge(units, cap)
    return steps
