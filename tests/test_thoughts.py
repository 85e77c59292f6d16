"""Thoughts and answers apart: splitting a reasoning policy's output at its markers, segmenting
a long thought into steps, and reading the answer from the answer part only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fakes import DELIM, PROMPT, ScriptedPolicy, make_ctx, run
from ttscale.engines.base import Continuation
from ttscale.run.evaluation import _candidate_entry
from ttscale.search.best_of_n import sample_solutions
from ttscale.search.result import Candidate
from ttscale.search.steps_from_text import split_continuation
from ttscale.thoughts import (
    THINK_TAGS,
    ThinkingFormat,
    ThoughtSegmentation,
    segment_thought,
    split_thoughts,
)

TRACES = Path(__file__).parent / "data" / "thoughts"
R1 = ThinkingFormat(opened_by_prompt=True)  # R1's template ends the prompt with "<think>\n"


def trace(name: str) -> str:
    return (TRACES / name).read_text()


def continuation(text: str, finish="stop") -> Continuation:
    """A continuation with one token per word, each token's offset its word's start."""
    offsets = tuple(m.start() for m in re.finditer(r"\S+", text))
    return Continuation(text, finish, 10, 0, len(offsets) + (finish == "stop"),
                        tuple(-0.1 * k for k in range(len(offsets))), offsets)


def candidate(steps) -> Candidate:
    return Candidate(node_id=1, steps=tuple(steps), step_scores=None, finish_reason="stop")


# -- splitting ----------------------------------------------------------------------------------
def test_r1_text_starts_inside_the_thought_and_closes_once():
    text = trace("r1_closed.txt")
    split = split_thoughts(text, R1)
    assert split.state == "closed"
    assert split.thinking == text[:text.index("</think>")]
    assert split.answer == text[text.index("</think>") + len("</think>"):]
    assert split.answer.lstrip().startswith("Tom starts with 20 apples")


def test_a_closing_marker_alone_means_the_prompt_opened_the_thought():
    # vLLM's R1 reasoning parser reads it so; the format need not say it
    split = split_thoughts(trace("r1_closed.txt"), THINK_TAGS)
    assert split.state == "closed" and "\\boxed{14}" in split.thinking


def test_qwen3_thought_is_between_its_markers():
    text = trace("qwen3_closed.txt")
    split = split_thoughts(text)
    assert split.state == "closed"
    assert split.thinking == text[len("<think>"):text.index("</think>")]
    assert split.thinking.startswith("\nOkay, let's see.")
    assert split.answer.strip().endswith("$\\boxed{20}$.")


def test_a_trace_cut_off_inside_its_thought_has_no_answer_part():
    text = trace("r1_cut_off.txt")
    split = split_thoughts(text, R1)
    assert (split.state, split.thinking, split.answer) == ("unclosed", text, "")
    # without the format's word that the prompt opened it, it is plain text
    assert split_thoughts(text, THINK_TAGS).state == "none"


def test_text_without_markers_is_all_answer():
    split = split_thoughts("Step 1: 3 + 4 = 7.\n\nThe answer is 7.")
    assert (split.state, split.thinking, split.answer) == (
        "none", None, "Step 1: 3 + 4 = 7.\n\nThe answer is 7.")


def test_other_markers():
    fmt = ThinkingFormat(open="<reasoning>", close="</reasoning>")
    split = split_thoughts("<reasoning>hm</reasoning>42", fmt)
    assert (split.thinking, split.answer) == ("hm", "42")


# -- steps and answers --------------------------------------------------------------------------
def test_the_answer_comes_from_the_answer_part_not_from_a_box_inside_the_thought():
    steps = split_continuation(continuation(trace("r1_closed.txt")), DELIM, R1)
    thought = [s for s in steps if s.thought]
    answer = [s for s in steps if not s.thought]
    assert thought and answer and steps[:len(thought)] == thought  # the thought comes first
    assert "\\boxed{14}" in "".join(s.text for s in thought)  # the box in the thought...
    assert not any(s.thought for s in steps[len(thought):])
    assert thought[-1].text.rstrip().endswith("</think>")  # the marker stays with the thought
    assert candidate(steps).answer == "14"  # ...does not end the path; the answer part does
    assert answer[-1].text == "**Final Answer**\n\\boxed{14}\n"


def test_a_cut_off_trace_answers_nothing_though_its_thought_names_numbers():
    text = trace("r1_cut_off.txt")
    steps = split_continuation(continuation(text, "length"), DELIM, R1)
    assert steps and all(s.thought for s in steps)
    assert candidate(steps).answer is None
    # read as plain text, the same words would give 25 (after "the answer is" in the last one)
    assert candidate(split_continuation(continuation(text, "length"), DELIM)).answer == "25"


def test_an_empty_thought_makes_no_step():
    steps = split_continuation(continuation(trace("qwen3_empty_thought.txt")), DELIM,
                               THINK_TAGS)
    assert [s.thought for s in steps] == [False]
    assert candidate(steps).answer == "7"


def test_every_generated_token_and_log_prob_lands_in_the_step_it_starts_in():
    text = trace("qwen3_closed.txt")
    cont = continuation(text)
    steps = split_continuation(cont, DELIM, THINK_TAGS)
    assert sum(s.generated_tokens for s in steps) == cont.generated_tokens
    close = text.index("</think>") + len("</think>")
    in_thought = sum(1 for offset in cont.token_offsets if offset < close)
    assert sum(s.generated_tokens for s in steps if s.thought) == in_thought
    assert [lp for s in steps for lp in s.token_logprobs] == list(cont.token_logprobs)


def test_without_a_thinking_format_steps_are_as_before():
    text = trace("qwen3_closed.txt")
    steps = split_continuation(continuation(text), DELIM)
    pieces = [p for p in text.split(DELIM) if p.strip()]
    assert [s.text for s in steps] == pieces  # the box in the last piece ends the path
    assert not any(s.thought for s in steps)


# -- segmenting a long thought ------------------------------------------------------------------
def test_paragraphs_merge_while_a_step_stays_within_the_cap():
    paragraph = "x" * 500
    text = "\n\n".join([paragraph] * 7)
    spans = segment_thought(text, 0, len(text), ThoughtSegmentation(max_step_chars=2000))
    # three paragraphs and two separators: 1504 characters; a fourth would make 2006
    assert [b - a for a, b in spans] == [1504, 1504, 500]
    assert "".join(text[a:b] for a, b in spans).count("x") == 3500


def test_a_long_thought_makes_at_most_the_allowed_steps_covering_it_in_order():
    # about 30 000 tokens: 600 paragraphs of ~200 characters
    paragraphs = [f"Paragraph {k}: " + "we check the sum again. " * 8 for k in range(600)]
    text = "\n\n".join(paragraphs)
    rule = ThoughtSegmentation(max_step_chars=2000, max_steps=40)
    spans = segment_thought(text, 0, len(text), rule)
    assert 20 <= len(spans) <= 40
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:], strict=False))
    found = [p for a, b in spans for p in re.findall(r"Paragraph \d+", text[a:b])]
    assert found == [f"Paragraph {k}" for k in range(600)]  # each once, in order
    assert all(text[a:b].lstrip() == text[a:b] for a, b in spans)  # no step starts in a gap


def test_an_oversized_paragraph_is_cut_at_line_breaks_then_sentences():
    lines = "\n".join(["A line of work. " * 10] * 3)  # one paragraph, three 160-char lines
    spans = segment_thought(lines, 0, len(lines), ThoughtSegmentation(max_step_chars=200))
    assert len(spans) == 3 and all(lines[a:b].startswith("A line") for a, b in spans)
    sentence_soup = "One sentence here. " * 30
    spans = segment_thought(sentence_soup, 0, len(sentence_soup),
                            ThoughtSegmentation(max_step_chars=100))
    assert all(b - a <= 100 for a, b in spans)
    assert all(sentence_soup[a:b].endswith("here.") for a, b in spans)


def test_segmentation_rejects_a_cap_below_one():
    with pytest.raises(ValueError, match="max_step_chars"):
        ThoughtSegmentation(max_step_chars=0)


# -- through a search and into the record -------------------------------------------------------
def test_best_of_n_reads_answers_after_the_thought_and_records_the_thought():
    texts = [trace("r1_closed.txt"), trace("r1_cut_off.txt")]
    policy = ScriptedPolicy(lambda prefix, j, stop: (texts[j % 2], "stop" if j % 2 == 0
                                                      else "length"))
    ctx = make_ctx(policy)
    ctx.thinking = R1
    candidates = run(sample_solutions(ctx, 2))
    assert [c.answer for c in candidates] == ["14", None]
    closed, cut = (_candidate_entry(c, {"14": True}, None) for c in candidates)
    assert closed["correct"] and closed["thought"]["answer_part"]
    assert not cut["correct"] and cut["thought"]["answer_part"] is False
    assert cut["thought"]["tokens"] == candidates[1].generated_tokens
    nodes = [n.to_dict() for n in ctx.tree.nodes[1:]]
    assert any(n.get("thought") for n in nodes) and not all(n.get("thought") for n in nodes)


def test_a_policy_that_does_not_think_leaves_records_as_they_were():
    policy = ScriptedPolicy(lambda prefix, j, stop: ("3 + 4 = 7.\n\nThe answer is 7.", "stop"))
    ctx = make_ctx(policy)
    [c] = run(sample_solutions(ctx, 1))
    assert "thought" not in _candidate_entry(c, {"7": True}, None)
    assert all("thought" not in n.to_dict() for n in ctx.tree.nodes)


# -- step by step: the step-wise searches ---------------------------------------------------------
STEPWISE = ["First I add: 3 + 4 = 7, so maybe \\boxed{3}? No.",
            "Checking again gives 7.\n</think>",
            "The answer is \\boxed{7}."]


def stepwise(prefix, j, stop):
    done = prefix[len(PROMPT):].count(DELIM)
    if done == len(STEPWISE) - 1:
        return STEPWISE[-1], "eos"
    return STEPWISE[done] + DELIM + "and so on", "eos"


@pytest.mark.parametrize("method", ["beam", "dvts", "pf", "rebase", "lookahead"])
def test_step_wise_searches_tell_the_thought_apart_and_read_the_answer_after_it(method):
    from fakes import ScriptedScorer
    from ttscale.search import solve

    ctx = make_ctx(ScriptedPolicy(stepwise), ScriptedScorer(), width=2)
    ctx.thinking = R1
    result = run(solve(ctx, method, 4))
    finished = [c for c in result.candidates if c.finish_reason == "eos"]
    assert finished
    for c in finished:  # the box inside the thought did not end the path
        *thought, answer = c.steps
        assert thought and all(s.thought for s in thought) and not answer.thought
        assert "\\boxed{3}" in thought[0].text and "</think>" in thought[-1].text
        assert c.answer == "7"


def test_a_step_that_closes_the_thought_and_answers_is_an_answer_step():
    from ttscale.thoughts import step_in_thought

    assert step_in_thought("hm.\n</think>", True, R1) == (True, False)
    assert step_in_thought("hm.</think>\nThe answer is 7.", True, R1) == (False, False)
    assert step_in_thought("<think>\nLet me see.", False, THINK_TAGS) == (True, True)
    assert step_in_thought("The answer is 7.", False, THINK_TAGS) == (False, False)


def test_a_prm_reads_the_thought_without_its_markers():
    from fakes import ScriptedScorer
    from ttscale.search import solve

    scorer = ScriptedScorer()
    ctx = make_ctx(ScriptedPolicy(stepwise), scorer, width=2)
    ctx.thinking = R1
    run(solve(ctx, "beam", 4))
    read = [text for call in scorer.calls for steps in call.solutions for text in steps]
    assert any(text.endswith("Checking again gives 7.") for text in read)
    assert not any("</think>" in text for text in read)
    assert "</think>" in "".join(n.step.text for n in ctx.tree.nodes if n.step)  # kept there


PARAGRAPHS = 200  # "Thought line k." paragraphs, then the thought closes and the answer comes


def chatty(prefix, j, stop):
    written = prefix[len(PROMPT):]
    k = written.count("Thought line")
    if "</think>" in written:
        return "The answer is \\boxed{7}.", "eos"
    if k >= PARAGRAPHS:
        return "Done.\n</think>" + DELIM + "The answer is \\boxed{7}.", "eos"
    return f"Thought line {k}." + DELIM + f"Thought line {k + 1}.", "eos"


def test_a_step_inside_the_thought_runs_through_paragraphs_up_to_the_length_of_a_step():
    from fakes import ScriptedScorer
    from ttscale.search import solve
    from ttscale.search.beam_search import THOUGHT_STEP_CHARS

    policy = ScriptedPolicy(chatty)
    ctx = make_ctx(policy, ScriptedScorer(), width=2, max_step_tokens=2048, max_depth=40)
    ctx.thinking = R1
    result = run(solve(ctx, "beam", 2))
    [best, *_] = [c for c in result.candidates if c.answer is not None]
    thought = [s for s in best.steps if s.thought]
    # 200 short paragraphs make a handful of steps, each but the last past the length
    assert 2 <= len(thought) <= 8
    assert all(len(s.text) >= THOUGHT_STEP_CHARS for s in thought[:-2])
    assert "\n\n".join(s.text for s in thought).count("Thought line") == PARAGRAPHS
    assert best.answer == "7" and not best.steps[-1].thought
    assert ctx.ledger.policy_calls == len(policy.calls) > len(thought)  # every part charged
