"""A reasoning policy's thought under a thinking budget (budget forcing) and an early exit that
probes the answer (Dynasor-CoT): each stops exactly where its rule says, and every token,
probes included, is on the ledger."""

from __future__ import annotations

import pytest

from fakes import PROMPT, ScriptedPolicy, make_ctx, run, tokenize
from ttscale.compute import TokenCount
from ttscale.errors import ConfigError
from ttscale.run.evaluation import _candidate_entry
from ttscale.search.best_of_n import majority_vote, sample_solutions
from ttscale.search.thinking_budget import PROBE, PROBE_TOKENS
from ttscale.settings import SearchSettings
from ttscale.thoughts import ThinkingFormat

R1 = ThinkingFormat(opened_by_prompt=True)
FORCED = "\n</think>\n\n"
ANSWER = "So the total is 7.\n\n**Final Answer**\n\\boxed{7}"
MUSING = "Hmm, let me check the sum once more. "  # 8 tokens, never closes the thought


def thinking_ctx(respond, **settings):
    policy = ScriptedPolicy(respond)
    ctx = make_ctx(policy, end_stops=(), max_solution_tokens=400, **settings)
    ctx.thinking = R1
    return policy, ctx


def thought_of(prefix: str) -> str:
    return prefix[len(PROMPT):]


def assert_ledger_holds_every_call(ctx, policy):
    conts = policy.continuations
    assert ctx.ledger.policy == TokenCount.total(
        TokenCount(c.prompt_tokens, c.cached_prompt_tokens, c.generated_tokens) for c in conts)
    assert ctx.ledger.policy_calls == len(policy.calls)


def test_a_thought_past_its_budget_is_closed_and_the_model_answers_after_it():
    def respond(prefix, j, stop):
        return (ANSWER, "eos") if prefix.endswith(FORCED) else (MUSING * 50, "eos")

    policy, ctx = thinking_ctx(respond, thinking_budget=30)
    [candidate] = run(sample_solutions(ctx, 1))
    thought_call, answer_call = policy.calls
    assert thought_call.max_tokens == 30 and "</think>" in thought_call.stop
    assert answer_call.prefixes[0].endswith(FORCED)
    assert answer_call.max_tokens == 400 - 30  # the rest of the solution's tokens
    assert candidate.thinking == {"end": "budget", "thought_tokens": 30}
    assert sum(s.generated_tokens for s in candidate.steps if s.thought) == 30
    assert candidate.answer == "7"
    assert_ledger_holds_every_call(ctx, policy)


def test_a_thought_closed_within_the_budget_is_not_forced():
    def respond(prefix, j, stop):
        if prefix.endswith("</think>"):
            return ("\n\n" + ANSWER, "eos")
        return ("Three and four make seven.\n</think>\n\nignored", "eos")

    policy, ctx = thinking_ctx(respond, thinking_budget=100)
    [candidate] = run(sample_solutions(ctx, 1))
    first, second = policy.continuations
    assert first.stop_string == "</think>"
    assert candidate.thinking == {"end": "closed",
                                  "thought_tokens": first.generated_tokens}
    assert FORCED not in second.text and candidate.answer == "7"


def test_early_exit_stops_when_the_last_probes_agree_and_answers_with_them():
    probe_answers = iter(["5} \\]", "7} \\]", "7} \\]", "7} \\]", "9} \\]"])

    def respond(prefix, j, stop):
        if prefix.endswith(PROBE):
            return next(probe_answers), "stop"
        return MUSING * 50, "eos"

    policy, ctx = thinking_ctx(respond, probe_every=10, probe_agreement=3,
                               thinking_budget=200)
    [candidate] = run(sample_solutions(ctx, 1))
    thoughts = [c for c in policy.calls if not c.prefixes[0].endswith(PROBE)]
    probes = [c for c in policy.calls if c.prefixes[0].endswith(PROBE)]
    # probes 5, 7, 7, 7: the fourth makes three in a row, and no answer call follows
    assert [c.max_tokens for c in thoughts] == [10, 10, 10, 10]
    assert len(probes) == 4
    assert all(c.temperature == 0.0 and c.max_tokens == PROBE_TOKENS for c in probes)
    probe_tokens = sum(c.generated_tokens for call in probes for conts in call.replies
                       for c in conts)
    assert candidate.thinking == {"end": "early_exit", "thought_tokens": 40,
                                  "probes": ["5", "7", "7", "7"], "probe_tokens": probe_tokens}
    assert candidate.answer == "7"
    assert candidate.policy_tokens.generated == 40 + probe_tokens  # probes are its cost too
    assert_ledger_holds_every_call(ctx, policy)
    entry = _candidate_entry(candidate, {"7": True}, None)
    assert entry["correct"] and entry["thought"]["end"] == "early_exit"


def test_probes_that_never_agree_leave_the_budget_to_decide():
    counter = iter(range(1000))

    def respond(prefix, j, stop):
        if prefix.endswith(PROBE):
            return f"{next(counter)}}} \\]", "stop"
        return (ANSWER, "eos") if prefix.endswith(FORCED) else (MUSING * 50, "eos")

    policy, ctx = thinking_ctx(respond, probe_every=10, thinking_budget=35)
    [candidate] = run(sample_solutions(ctx, 1))
    chunks = [c.max_tokens for c in policy.calls if not c.prefixes[0].endswith((PROBE, FORCED))]
    assert chunks == [10, 10, 10, 5]  # the last chunk only fills the budget
    assert candidate.thinking["end"] == "budget" and candidate.thinking["thought_tokens"] == 35
    assert len(candidate.thinking["probes"]) == 4 and candidate.answer == "7"


def test_a_probe_whose_box_never_closes_is_no_answer():
    def respond(prefix, j, stop):
        if prefix.endswith(PROBE):
            return "\\frac{1}{", "length"
        return (ANSWER, "eos") if prefix.endswith(FORCED) else (MUSING * 50, "eos")

    _, ctx = thinking_ctx(respond, probe_every=10, probe_agreement=2, thinking_budget=30)
    [candidate] = run(sample_solutions(ctx, 1))
    assert candidate.thinking["probes"] == [None, None, None]  # None never agrees
    assert candidate.thinking["end"] == "budget"


def test_every_sample_keeps_its_own_stream_and_the_vote_counts_them():
    def respond(prefix, j, stop):
        if prefix.endswith(FORCED):
            return (f"\\boxed{{{7 if j % 2 == 0 else 8}}}", "eos")
        return (f"Sample {j} thinks. " + MUSING * 20, "eos")

    policy, ctx = thinking_ctx(respond, thinking_budget=12)
    result = run(majority_vote(ctx, 4))
    answers = [c.answer for c in result.candidates]
    assert answers == ["7", "8", "7", "8"]
    assert sorted(c.first_sample for c in policy.calls if len(c.prefixes) == 1) == [
        0, 0, 1, 1, 2, 2, 3, 3]
    again_policy, again = thinking_ctx(respond, thinking_budget=12)
    run(majority_vote(again, 4))
    assert [c.text for c in again_policy.continuations] == [
        c.text for c in policy.continuations]  # reproducible


def test_a_budget_needs_a_policy_that_thinks_and_room_to_answer():
    policy = ScriptedPolicy(lambda prefix, j, stop: ("7", "eos"))
    ctx = make_ctx(policy, thinking_budget=10)
    with pytest.raises(ConfigError, match="needs a policy that thinks"):
        run(sample_solutions(ctx, 1))
    with pytest.raises(ConfigError, match="leaves no room for the answer"):
        SearchSettings(thinking_budget=4096, max_solution_tokens=4096)
    with pytest.raises(ConfigError, match="probe_agreement"):
        SearchSettings(probe_agreement=1)
    # a run, ttscale.solve and the server refuse it when they apply the prompt's settings,
    # before any problem is searched
    from ttscale.prompts import PromptFormat

    with pytest.raises(ConfigError, match="needs a policy that thinks"):
        PromptFormat().apply(SearchSettings(probe_every=16))
    assert PromptFormat(thinking="on").apply(SearchSettings(thinking_budget=10)
                                             ).thinking_budget == 10


def test_without_a_budget_nothing_changes():
    def respond(prefix, j, stop):
        return (MUSING * 3 + "</think>\n\n" + ANSWER, "eos")

    policy, ctx = thinking_ctx(respond)
    [candidate] = run(sample_solutions(ctx, 1))
    assert len(policy.calls) == 1 and policy.calls[0].stop == ()
    assert candidate.thinking is None and candidate.answer == "7"
    assert len(tokenize(policy.continuations[0].text)) + 1 == candidate.generated_tokens


def test_the_new_settings_enter_a_run_identity_only_when_set():
    assert "thinking_budget" not in SearchSettings().identity()
    assert "probe_agreement" not in SearchSettings().identity()
    assert SearchSettings(thinking_budget=100).identity()["thinking_budget"] == 100
