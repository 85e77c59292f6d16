"""``--method auto`` against a scripted policy: the probe, the predicted bin, the choice, and
the probe's samples reused by the chosen method."""

from __future__ import annotations

import asyncio

import pytest

from fakes import END, PROMPT, ScriptedPolicy, ScriptedScorer, Stepper
from ttscale.compute import Ledger
from ttscale.planner.auto import auto_search
from ttscale.planner.difficulty import absolute_binning
from ttscale.planner.plan import Plan, prior_plan
from ttscale.planner.probe import prior_predictor
from ttscale.search.beam_search import beam_search, grouped_beam_search
from ttscale.search.best_of_n import best_of_n, sample_solutions
from ttscale.search.context import SearchContext
from ttscale.settings import SearchSettings
from ttscale.thoughts import THINK_TAGS

SMALL_POLICY = 1_000  # parameters of the scripted policy: the prior's "< 7B" class


def make_ctx(policy, scorer=None, **settings) -> SearchContext:
    settings.setdefault("end_stops", (END,))
    return SearchContext(problem="what is 3 + 4?", prompt=PROMPT, policy=policy, scorer=scorer,
                         settings=SearchSettings(**settings),
                         ledger=Ledger(policy.info.parameters, 0))


def run(coro):
    return asyncio.run(coro)


def texts(candidates):
    return sorted(tuple(s.text for s in c.steps) for c in candidates)


def agreeing() -> Stepper:
    return Stepper(answer_depth=3)  # every path answers 7


def scattering() -> Stepper:
    return Stepper(answer_depth=3, answer=lambda path: str(10 + path[0]))  # sample j: 10 + j


def test_beam_with_reused_probe_equals_beam_without():
    """The probe's whole solutions begin with the first steps beam search would sample."""
    plain = ScriptedPolicy(agreeing())
    plain_ctx = make_ctx(plain, ScriptedScorer(), width=4)
    expected = run(beam_search(plain_ctx, 16)).candidates
    reusing = ScriptedPolicy(agreeing())
    ctx = make_ctx(reusing, ScriptedScorer(), width=4)
    probe = run(sample_solutions(ctx, 4))
    got = run(grouped_beam_search(ctx, 1, 4, 4, reuse=probe))
    assert texts(got) == texts(expected)
    first_round = reusing.calls[1]
    assert first_round.prefixes == (PROMPT,) and first_round.n == 12
    assert first_round.first_sample == 4  # samples 4..15: the probe holds 0..3
    depth_one = [n for n in ctx.tree.nodes if n.depth == 1 and n.status != "finished"]
    assert len(depth_one) == 4 + 16  # the probe's chains and beam's own first round


def test_dvts_reuses_the_probe_in_its_first_round():
    policy = ScriptedPolicy(agreeing())
    ctx = make_ctx(policy, ScriptedScorer(), width=2)
    probe = run(sample_solutions(ctx, 3))
    got = run(grouped_beam_search(ctx, 4, 1, 2, reuse=probe))
    assert len(got) == 8
    assert [(c.n, c.first_sample) for c in policy.calls[1:2]] == [(5, 3)]


def test_easy_problem_gets_best_of_n_from_the_probe_onwards():
    policy, scorer = ScriptedPolicy(agreeing(), parameters=SMALL_POLICY), ScriptedScorer()
    ctx = make_ctx(policy, scorer, width=4)
    plan = prior_plan(SMALL_POLICY, "scripted", "scripted", width=4)
    result, info = run(auto_search(ctx, 16, plan, scorer_spec="scripted"))
    assert info["predicted_bin"] == "easy" and info["probe"]["agreement"] == 1.0
    assert (info["method"], info["n"], info["source"]) == ("bon", 16, "prior")
    assert "< 7B" in info["reason"]
    assert [(c.n, c.first_sample) for c in policy.calls] == [(4, 0), (12, 4)]
    assert len(result.candidates) == 16 and result.method == "auto"
    assert [len(call.solutions) for call in scorer.calls] == [4, 12]  # each sample scored once
    # the same 16 solutions as Best-of-16 drawn in one go
    direct = run(best_of_n(make_ctx(ScriptedPolicy(agreeing()), ScriptedScorer(), width=4), 16))
    assert texts(result.candidates) == texts(direct.candidates)
    assert info["probe"]["nodes"] == [c.node_id for c in result.candidates[:4]]


def test_hard_problem_gets_beam_search_with_the_probe_as_first_steps():
    policy = ScriptedPolicy(scattering(), parameters=SMALL_POLICY)
    ctx = make_ctx(policy, ScriptedScorer(), width=4)
    plan = prior_plan(SMALL_POLICY, "scripted", "scripted", width=4)
    result, info = run(auto_search(ctx, 16, plan, scorer_spec="scripted"))
    assert info["predicted_bin"] == "hard" and info["probe"]["agreement"] == 0.25
    assert (info["method"], info["n"], info["width"]) == ("beam", 16, 4)
    assert (policy.calls[1].n, policy.calls[1].first_sample) == (12, 4)
    samples = sum(call.samples for call in policy.calls)
    plain = ScriptedPolicy(scattering())
    run(beam_search(make_ctx(plain, ScriptedScorer(), width=4), 16))
    assert samples == sum(call.samples for call in plain.calls)  # the probe cost no paths
    assert result.ledger.policy.generated > 0


def test_a_policy_that_thinks_gets_best_of_n_where_a_small_one_would_get_beam_search():
    # the paper's rule for long-reasoning policies, applied by the prompt's thought markers
    policy = ScriptedPolicy(scattering(), parameters=SMALL_POLICY)
    ctx = make_ctx(policy, ScriptedScorer(), width=4)
    ctx.thinking = THINK_TAGS
    plan = prior_plan(SMALL_POLICY, "scripted", "scripted", width=4)
    _, info = run(auto_search(ctx, 16, plan, scorer_spec="scripted"))
    assert info["predicted_bin"] == "hard"
    assert (info["method"], info["n"]) == ("bon", 16)
    assert "reasoning policy" in info["reason"]


def test_budget_below_the_probe_answers_from_the_probe():
    policy = ScriptedPolicy(scattering(), parameters=SMALL_POLICY)
    ctx = make_ctx(policy, ScriptedScorer(), width=4)
    plan = prior_plan(SMALL_POLICY, "scripted", "scripted", width=4)
    result, info = run(auto_search(ctx, 2, plan, scorer_spec="scripted"))
    assert [(c.n, c.first_sample) for c in policy.calls] == [(2, 0)]
    assert (info["method"], info["n"]) == ("bon", 2)  # beam needs at least the width
    assert len(result.candidates) == 2


def _calibrated(policy_name="scripted", parameters=SMALL_POLICY, scorer="scripted") -> Plan:
    return Plan(source="calibrated", policy={"name": policy_name, "parameters": parameters},
                scorer=scorer, binning=absolute_binning(), predictor=prior_predictor(),
                probe_size=4, width=4, budgets=(4, 16))


@pytest.mark.parametrize(("plan", "why"), [
    (_calibrated(policy_name="other-7b", parameters=7 * 10**9), "calibrated for policy other"),
    (_calibrated(scorer="qwen-prm:/x"), "calibrated with scorer qwen-prm:/x"),
])
def test_a_plan_for_another_policy_or_scorer_falls_back_to_the_prior(plan, why):
    policy = ScriptedPolicy(agreeing(), parameters=SMALL_POLICY)
    ctx = make_ctx(policy, ScriptedScorer(), width=4)
    _, info = run(auto_search(ctx, 16, plan, scorer_spec="scripted"))
    assert info["source"] == "prior" and info["plan"] == "calibrated"
    assert any(why in note for note in info["notes"])


def test_solve_auto_follows_a_plan_file(tmp_path):
    from ttscale.planner.plan import Candidate as Option
    from ttscale.planner.plan import Choice
    from ttscale.prompts import PromptFormat
    from ttscale.run.solve import solve_async
    from ttscale.settings import SearchSettings

    problem = "what is 3 + 4?"
    prompt = PromptFormat()
    stepper = Stepper(prompt.render(problem), answer_depth=2, delimiter="\n")
    plan = _calibrated()
    bon4 = Choice("bon", 4, 6, (Option("bon", 4, 0.3, 0.1, 0.6, 1e8),))
    dvts8 = Choice("dvts", 8, 6, (Option("dvts", 8, 0.5, 0.2, 0.8, 1e9),))
    plan.choices = {name: {4: bon4, 16: dvts8} for name in ("easy", "medium", "hard")}
    plan.save(tmp_path / "plan.json")
    result = run(solve_async(problem, policy=ScriptedPolicy(stepper, parameters=SMALL_POLICY),
                             method="auto", n=16, scorer=ScriptedScorer(),
                             settings=SearchSettings(width=4, max_depth=4),
                             prompt=prompt, plan=tmp_path / "plan.json"))
    assert result.plan.decision.source == "plan" and result.plan.predicted_bin == "easy"
    assert (result.plan.decision.method, result.plan.decision.n) == ("dvts", 8)
    assert "had the best accuracy 50.0%" in result.plan.decision.reason
    assert result.answer == "7" and result.method == "auto"
