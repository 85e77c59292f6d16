"""Thinking budgets as calibration options: a reasoning policy's whole-solution methods are
measured again with their thoughts cut at each budget, the plan may choose ``method+thinkB``,
and ``auto`` then runs that method under that budget."""

from __future__ import annotations

import asyncio
import json

import pytest

from fakes import ScriptedPolicy
from ttscale.errors import ConfigError
from ttscale.planner.options import option_label, split_option
from ttscale.planner.outcomes import collect_outcomes
from ttscale.planner.plan import load_plan
from ttscale.prompts import PromptFormat
from ttscale.run.calibrate import StudyConfig, calibrate, read_half, run_half
from ttscale.run.runner import DatasetSelection
from ttscale.settings import SearchSettings

FORCED = "\n</think>\n\n"
BUDGET = 10


def overthinker(prefix, j, stop):
    """Right when its thought is cut short (7), wrong when it thinks to the end (8)."""
    if prefix.endswith(FORCED):
        return "So \\boxed{7}.", "eos"
    return "Hmm, let me reconsider. " * 12 + "</think>\n\nSo \\boxed{8}.", "eos"


def study(tmp_path, **overrides) -> StudyConfig:
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text("".join(json.dumps({"id": f"p{k}", "problem": f"What is {k} + 7 - {k}?",
                                           "answer": "7"}) + "\n" for k in range(8)))
    fields = {"dataset": DatasetSelection(name=str(dataset)), "methods": ("majority",),
              "budgets": (2,), "scorer": "none", "probe_size": 2, "difficulty_samples": 2,
              "min_problems": 1, "thinking_budgets": (BUDGET,),
              "settings": SearchSettings(max_solution_tokens=200)}
    return StudyConfig(**{**fields, **overrides})


def test_option_labels_round_trip():
    assert option_label("bon") == "bon" and split_option("bon") == ("bon", None)
    assert option_label("bon", 512) == "bon+think512"
    assert split_option("bon+think512") == ("bon", 512)
    with pytest.raises(ConfigError, match="positive number of tokens"):
        split_option("bon+thinkmany")


def test_budgeted_records_are_options_of_their_own_and_the_probe_is_unbudgeted():
    def record(n, budget, correct, flops):
        entry = {"problem_id": "p", "method": "majority", "n": n, "correct": correct,
                 "ledger": {"total_flops": flops, "scorer_flops": 0.0},
                 "candidates": [{"answer": "7", "score": None}] * n}
        return entry | ({"thinking_budget": budget} if budget else {})

    [outcomes] = collect_outcomes([record(2, None, False, 100.0), record(2, 64, True, 40.0)],
                                  probe_size=2).values()
    assert set(outcomes.outcomes) == {("majority", 2), ("majority+think64", 2)}
    assert outcomes.probe_flops == 100.0  # the unbudgeted pool's first samples
    # a budgeted option cannot reuse the probe's samples: it pays for both
    assert outcomes.cost("majority+think64", 2, 2) == 140.0
    assert outcomes.cost("majority", 2, 2) == 100.0


def test_the_plan_chooses_the_budget_that_pays_and_auto_runs_under_it(tmp_path):
    config = study(tmp_path)
    policy = ScriptedPolicy(overthinker)
    prompt = PromptFormat(thinking="on")
    out = tmp_path / "study"
    plan = asyncio.run(calibrate(config, policy, None, prompt, out))
    cells = [choice for cells in plan.choices.values() for choice in cells.values()]
    assert cells and all(c.method == f"majority+think{BUDGET}" for c in cells)
    saved = load_plan(out / "plan.json")
    assert saved.info["study"]["thinking_budgets"] == [BUDGET]
    bin_name = next(name for name, cells in saved.choices.items() if cells)
    decision = saved.decide(bin_name, 2, parameters=policy.info.parameters,
                            model_name=policy.info.name)
    assert (decision.method, decision.thinking_budget) == ("majority", BUDGET)
    assert decision.to_dict()["thinking_budget"] == BUDGET

    # the evaluation half, replayed: the planner's choice is read from the budgeted records
    from ttscale.planner.evaluate import evaluate_plan

    _, evaluation_ids = config.split()
    asyncio.run(run_half(config, "evaluation", evaluation_ids, policy, None, prompt, out))
    outcomes, pass_rates = read_half(out, "evaluation", evaluation_ids, 2, (BUDGET,))
    rows = {row.name: row for row in evaluate_plan(saved, outcomes, pass_rates).rows}
    assert rows["majority@2"].accuracy.value == 0.0
    assert rows[f"majority+think{BUDGET}@2"].accuracy.value == 1.0
    assert rows["planner"].accuracy.value == 1.0

    # auto under the plan: the chosen method's thoughts are cut at the budget
    from fakes import make_ctx
    from ttscale.planner.auto import auto_search
    from ttscale.thoughts import THINK_TAGS

    live = ScriptedPolicy(overthinker)
    ctx = make_ctx(live, end_stops=(), max_solution_tokens=200)
    ctx.thinking = THINK_TAGS
    result, info = asyncio.run(auto_search(ctx, 2, saved, scorer_spec=None))
    assert info["source"] == "plan" and info["thinking_budget"] == BUDGET
    assert [c.answer for c in result.candidates] == ["7", "7"]
    assert [c.max_tokens for c in live.calls].count(BUDGET) == 2  # one cut thought each


def test_thinking_budgets_need_a_policy_that_thinks_and_positive_budgets(tmp_path):
    with pytest.raises(ConfigError, match="positive token counts"):
        study(tmp_path, thinking_budgets=(0,))
    config = study(tmp_path)
    ids, _ = config.split()
    with pytest.raises(ConfigError, match="measures a policy that thinks"):
        asyncio.run(run_half(config, "calibration", ids, ScriptedPolicy(overthinker), None,
                             PromptFormat(), tmp_path / "study"))
    assert not (tmp_path / "study" / "runs").exists()  # refused before any run
