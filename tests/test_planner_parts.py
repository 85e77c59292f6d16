"""The planner's pure parts: pass@1 bins, intervals, the prior rules, the probe predictor,
plan cells and decisions, plan files, the calibration split and the replayed evaluation."""

from __future__ import annotations

import json
import math

import pytest

from ttscale.errors import ConfigError
from ttscale.planner.difficulty import (
    PassRate,
    absolute_binning,
    parse_binning,
    pass_rates_from_records,
    quantile_binning,
)
from ttscale.planner.evaluate import evaluate_plan, markdown
from ttscale.planner.outcomes import Outcome, ProblemOutcomes, collect_outcomes
from ttscale.planner.plan import Plan, choose_cell, fit_budget, load_plan, prior_plan
from ttscale.planner.prior import prior_method
from ttscale.planner.probe import (
    Predictor,
    ProbeFeatures,
    fit_predictor,
    prior_predictor,
    probe_features,
)
from ttscale.planner.split import split_ids
from ttscale.stats import bootstrap_mean, paired_difference, ratio_of_means, wilson_interval


# -- difficulty ------------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "expected"), [
    (1.0, "easy"), (0.51, "easy"), (0.5, "medium"), (0.25, "medium"), (0.1, "medium"),
    (0.0999, "hard"), (0.0, "hard")])
def test_absolute_bins_follow_the_paper(rate, expected):
    assert absolute_binning().assign(rate) == expected


def test_quantile_bins_split_evenly_and_round_trip():
    rates = [i / 9 for i in range(10)]  # ten distinct pass rates
    binning = quantile_binning(rates, 5)
    assigned = [binning.assign(r) for r in rates]
    assert {name: assigned.count(name) for name in binning.names} == {
        f"level{k}": 2 for k in range(1, 6)}
    assert binning.assign(1.0) == "level1" and binning.assign(0.0) == "level5"
    restored = type(binning).from_dict(json.loads(json.dumps(binning.to_dict())))
    assert [restored.assign(r) for r in rates] == assigned


def test_bin_specs():
    assert parse_binning("absolute") == ("absolute", 3)
    assert parse_binning("quantile") == ("quantile", 5)
    assert parse_binning("quantile:3") == ("quantile", 3)
    for bad in ("quantile:1", "quantile:x", "thirds", "absolute:3"):
        with pytest.raises(ConfigError, match="absolute"):
            parse_binning(bad)


def test_pass_rates_read_the_largest_sample_record():
    def record(pid, n, correct):
        return {"problem_id": pid, "n": n,
                "candidates": [{"correct": k < correct} for k in range(n)]}

    rates = pass_rates_from_records([record("a", 4, 4), record("a", 8, 2), record("b", 8, 0)])
    assert rates["a"] == PassRate("a", 2, 8)
    assert rates["b"].value == 0.0
    interval = rates["b"].estimate
    assert interval.low == 0.0 and 0.3 < interval.high < 0.33  # Wilson: 0 of 8 is not "0"


# -- intervals -------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    estimate = wilson_interval(5, 10)
    assert estimate.value == 0.5
    assert estimate.low == pytest.approx(0.2366, abs=1e-4)
    assert estimate.high == pytest.approx(0.7634, abs=1e-4)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [1.0] * 30 + [0.0] * 70
    first = bootstrap_mean(values, seed=3)
    assert first == bootstrap_mean(values, seed=3)
    assert first.value == pytest.approx(0.3)
    assert 0.18 < first.low < 0.3 < first.high < 0.42
    assert bootstrap_mean([1.0] * 10).low == 1.0  # no spread, no interval


def test_paired_difference_sees_agreement_that_unpaired_intervals_miss():
    a = [1.0] * 40 + [0.0] * 60
    b = [1.0] * 35 + [0.0] * 65  # a is right wherever b is, and on 5 more problems
    difference = paired_difference(a, b)
    assert difference.value == pytest.approx(0.05)
    assert difference.low > 0  # consistently better, though the accuracies' intervals overlap
    with pytest.raises(ValueError, match="length"):
        paired_difference([1.0], [1.0, 0.0])


def test_ratio_of_means_is_paired_and_seeded():
    a = [2.0] * 50 + [6.0] * 50  # half the cost of b on every problem
    b = [4.0] * 50 + [12.0] * 50
    ratio = ratio_of_means(a, b, seed=1)
    assert ratio.value == 0.5 and ratio.low == 0.5 and ratio.high == 0.5  # no spread in pairs
    spread = ratio_of_means([1.0, 3.0] * 20, [2.0, 2.0] * 20, seed=1)
    assert spread == ratio_of_means([1.0, 3.0] * 20, [2.0, 2.0] * 20, seed=1)
    assert spread.low < spread.value == 1.0 < spread.high
    with pytest.raises(ValueError, match="length"):
        ratio_of_means([1.0], [1.0, 2.0])


# -- prior rules -----------------------------------------------------------------------------
@pytest.mark.parametrize(("parameters", "difficulty", "method"), [
    (1.54e9, "easy", "bon"), (3.21e9, "medium", "beam"), (1.24e9, "hard", "beam"),
    (7.62e9, "easy", "dvts"), (8.03e9, "medium", "dvts"), (14.7e9, "hard", "beam"),
    (32.8e9, "easy", "dvts"), (70.6e9, "hard", "bon"), (72.7e9, "easy", "bon"),
    (405e9, "medium", "bon")])
def test_prior_rules_by_policy_size(parameters, difficulty, method):
    chosen, rule = prior_method(int(parameters), difficulty)
    assert chosen == method
    assert method in rule


def test_prior_rules_for_hard_sets_and_long_reasoning():
    assert prior_method(8_030_000_000, "easy", dataset="aime24")[0] == "dvts"
    assert prior_method(14_700_000_000, "hard", dataset="aime24")[0] == "bon"
    assert prior_method(1_500_000_000, "hard",
                        model_name="DeepSeek-R1-Distill-Qwen-1.5B")[0] == "bon"
    with pytest.raises(ConfigError, match="--params"):
        prior_method(None, "easy")
    with pytest.raises(ConfigError, match="easy, medium and hard"):
        prior_method(10**9, "level1")


def test_fit_budget_keeps_tree_searches_on_the_width():
    assert fit_budget("beam", 16, 4) == ("beam", 16)
    assert fit_budget("dvts", 14, 4) == ("dvts", 12)
    assert fit_budget("beam", 3, 4) == ("bon", 3)
    assert fit_budget("bon", 7, 4) == ("bon", 7)


# -- probe -----------------------------------------------------------------------------------
def test_probe_features_group_equivalent_answers():
    features = probe_features(["1/2", "0.5", "3", None], [0.2, 0.4, 0.6, 0.8])
    assert features.agreement == 0.5  # 1/2 and 0.5 agree
    assert features.answered == 0.75
    assert features.score == pytest.approx(0.5)
    assert probe_features([None, None], None).agreement == 0.0


def test_prior_predictor_reads_agreement():
    predictor = prior_predictor()

    def bin_of(agreement):
        return predictor.predict(ProbeFeatures(4, agreement, 1.0, 0.1))

    assert [bin_of(a) for a in (1.0, 0.75, 0.5, 0.25, 0.0)] == [
        "easy", "easy", "medium", "hard", "hard"]


def test_fitted_predictor_recovers_planted_thresholds():
    names = ("easy", "medium", "hard")
    agreement = [1.0, 1.0, 0.75, 0.5, 0.5, 0.5, 0.25, 0.25, 0.0, 0.0]
    truth = ["easy", "easy", "easy", "medium", "medium", "medium", "hard", "hard", "hard",
             "hard"]
    features = [ProbeFeatures(4, a, 1.0, None) for a in agreement]
    predictor, accuracy = fit_predictor(features, truth, names)
    assert accuracy == 1.0
    assert [predictor.predict(f) for f in features] == truth
    assert predictor.weight == 1.0  # no scores: agreement alone


def test_fitted_predictor_uses_scores_when_agreement_is_blind():
    names = ("easy", "hard")
    scores = [0.9, 0.8, 0.85, 0.1, 0.2, 0.15]
    truth = ["easy", "easy", "easy", "hard", "hard", "hard"]
    features = [ProbeFeatures(4, 0.5, 1.0, s) for s in scores]  # agreement says nothing
    predictor, accuracy = fit_predictor(features, truth, names)
    assert accuracy == 1.0 and predictor.weight < 1.0
    assert predictor.predict(ProbeFeatures(4, 0.5, 1.0, 0.95)) == "easy"


def test_fitted_predictor_maximises_matches_when_bins_overlap():
    names = ("easy", "medium", "hard")
    signal = [0.9, 0.9, 0.9, 0.6, 0.6, 0.3, 0.3, 0.3]
    truth = ["easy", "easy", "medium", "medium", "medium", "hard", "hard", "medium"]
    features = [ProbeFeatures(4, s, 1.0, None) for s in signal]
    _, accuracy = fit_predictor(features, truth, names)
    assert accuracy == pytest.approx(6 / 8)  # the best any cut can do: one error per tie


def test_predictor_needs_one_threshold_per_cut():
    with pytest.raises(ConfigError, match="thresholds"):
        Predictor(("easy", "medium", "hard"), 1.0, (0.5,), "fitted")


# -- outcomes and plan cells -----------------------------------------------------------------
def _problem(pid, results, probe_flops=10.0, agreement=1.0):
    """``results``: {(method, n): (correct, flops)}."""
    item = ProblemOutcomes(pid, {key: Outcome(correct, flops, 0.0)
                                 for key, (correct, flops) in results.items()})
    item.probe = ProbeFeatures(4, agreement, 1.0, None)
    item.probe_flops, item.probe_scorer_flops = probe_flops, 0.0
    return item


def test_costs_count_the_probe_once():
    item = _problem("p", {("bon", 16): (True, 40.0), ("bon", 2): (True, 5.0),
                          ("beam", 16): (True, 60.0)})
    assert item.cost("bon", 16, 4) == 40.0  # the probe is its first 4 samples
    assert item.cost("bon", 2, 4) == 10.0  # answered from the probe, which was spent anyway
    assert item.cost("beam", 16, 4) == 70.0  # charged in full on top (conservative)
    item.outcomes[("majority", 16)] = Outcome(True, 30.0, 0.0)
    item.probe_scorer_flops = 3.0
    assert item.cost("majority", 16, 4) == 33.0  # majority scores nothing; the probe did
    assert item.cost("bon", 16, 4) == 40.0  # Best-of-N's own record scored the probe's samples
    # an adaptive method read off the same streams: the probe at least, else its own record
    item.outcomes[("esc", 16)] = Outcome(True, 6.0, 0.0)  # stopped within the probe
    item.outcomes[("adaptive_sc", 16)] = Outcome(True, 20.0, 0.0)
    item.outcomes[("adaptive_bon", 16)] = Outcome(True, 25.0, 2.0)
    assert item.cost("esc", 16, 4) == 10.0
    assert item.cost("adaptive_sc", 16, 4) == 23.0  # scores nothing; the probe did
    assert item.cost("adaptive_bon", 16, 4) == 25.0


def test_choose_cell_takes_the_most_accurate_then_the_cheapest():
    problems = [_problem(f"p{i}", {("bon", 4): (i < 2, 10.0), ("bon", 16): (i < 3, 40.0),
                                   ("beam", 16): (i < 3, 30.0), ("beam", 4): (i < 1, 8.0)})
                for i in range(4)]
    cell = choose_cell(problems, 16, probe_size=4)
    assert (cell.method, cell.n) == ("beam", 16)  # ties bon@16 at 75 %, for fewer FLOPs
    assert cell.candidates[0].accuracy == 0.75 and cell.candidates[0].flops == 40.0
    assert [(c.method, c.n) for c in cell.candidates[:2]] == [("beam", 16), ("bon", 16)]
    small = choose_cell(problems, 4, probe_size=4)
    assert (small.method, small.n) == ("bon", 4)  # 16-path options do not fit a budget of 4
    assert choose_cell(problems, 2, probe_size=4) is None  # nothing fits beside the probe


def _calibrated_plan(**changes) -> Plan:
    problems = {"easy": [_problem("e", {("bon", 4): (True, 10.0), ("bon", 16): (True, 40.0),
                                        ("beam", 16): (False, 50.0)})],
                "hard": [_problem("h", {("bon", 4): (False, 10.0), ("bon", 16): (False, 40.0),
                                        ("beam", 16): (True, 50.0)})]}
    plan = Plan(source="calibrated", policy={"name": "tiny", "parameters": 10**9},
                scorer="confidence", binning=absolute_binning(), predictor=prior_predictor(),
                probe_size=4, width=4, budgets=(4, 16), dataset="gsm8k")
    for name, members in problems.items():
        plan.choices[name] = {b: choose_cell(members, b, 4) for b in (4, 16)}
    plan.fallbacks["medium"] = "only 0 calibration problem(s)"
    for key, value in changes.items():
        setattr(plan, key, value)
    return plan


def test_decisions_follow_the_plan_and_fall_back_with_a_reason():
    plan = _calibrated_plan()
    easy = plan.decide("easy", 16, parameters=10**9)
    assert (easy.method, easy.n, easy.source) == ("bon", 4, "plan")  # as good, 4× cheaper
    hard = plan.decide("hard", 16, parameters=10**9)
    assert (hard.method, hard.n, hard.width) == ("beam", 16, 4)
    between = plan.decide("hard", 8, parameters=10**9)
    assert (between.method, between.n) == ("bon", 4)
    assert "largest calibrated budget" in between.notes[0]
    outside = plan.decide("hard", 64, parameters=10**9)
    assert outside.source == "prior" and (outside.method, outside.n) == ("beam", 64)
    assert "outside the calibrated budgets" in outside.notes[0]
    medium = plan.decide("medium", 16, parameters=10**9)
    assert medium.source == "prior" and "only 0 calibration problem" in medium.notes[0]


def test_plan_files_round_trip_and_bad_files_are_refused(tmp_path):
    plan = _calibrated_plan()
    path = tmp_path / "plan.json"
    plan.save(path)
    loaded = load_plan(path)
    assert loaded.digest and loaded.identity.startswith("sha256:")
    assert loaded.to_dict() == plan.to_dict()
    assert "Liu et al." in json.loads(path.read_text())["rules"]
    for text, message in (("{}", "not a ttscale plan"), ("[1]", "not a ttscale plan"),
                          ("{not json", "cannot read"),
                          (json.dumps({**plan.to_dict(), "version": 99}), "version 99"),
                          (json.dumps({**plan.to_dict(), "probe": {}}), "malformed")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_plan(path)
    with pytest.raises(ConfigError, match="plan calibrate"):
        load_plan(tmp_path / "missing.json")


def test_prior_plan_decides_by_size():
    plan = prior_plan(135_000_000, "SmolLM2", "confidence", width=4)
    assert plan.decide("easy", 16, parameters=135_000_000).method == "bon"
    hard = plan.decide("hard", 10, parameters=135_000_000)
    assert (hard.method, hard.n) == ("beam", 8) and "width 4" in hard.reason


# -- split -----------------------------------------------------------------------------------
def test_split_is_stable_disjoint_and_order_free():
    ids = [f"p{i}" for i in range(40)]
    calibration, evaluation = split_ids(ids, 0.5, seed=1)
    assert len(calibration) == len(evaluation) == 20
    assert not set(calibration) & set(evaluation)
    again = split_ids(list(reversed(ids)), 0.5, seed=1)
    assert set(again[0]) == set(calibration)
    assert split_ids(ids, 0.5, seed=2)[0] != calibration
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_ids(ids, 1.0)


# -- replayed evaluation ---------------------------------------------------------------------
def _records(pid, results, probe_answers):
    """Run records of one problem: {(method, n): correct}; bon@4, the probe, gives
    ``probe_answers``."""
    def record(method, n, correct, answers=None):
        answers = answers or ["1"] * n
        return {"problem_id": pid, "method": method, "n": n, "correct": correct,
                "ledger": {"total_flops": 10.0 * n, "scorer_flops": 0.0},
                "candidates": [{"answer": a, "score": None, "correct": correct}
                               for a in answers]}

    return [record(m, n, c, probe_answers if (m, n) == ("bon", 4) else None)
            for (m, n), c in results.items()]


def test_evaluation_replays_the_plan_against_fixed_methods():
    plan = _calibrated_plan()
    agree, scatter = ["1", "1", "1", "1"], ["1", "2", "3", "4"]
    records = []
    for i in range(6):  # easy problems: every sample agrees; only bon is right
        records += _records(f"e{i}", {("bon", 4): True, ("bon", 16): True,
                                      ("beam", 16): False}, agree)
    for i in range(4):  # hard problems: samples scatter; only beam is right
        records += _records(f"h{i}", {("bon", 4): False, ("bon", 16): False,
                                      ("beam", 16): True}, scatter)
    outcomes = collect_outcomes(records, probe_size=4)
    rates = {pid: PassRate(pid, 8 if pid.startswith("e") else 0, 8) for pid in outcomes}
    result = evaluate_plan(plan, outcomes, rates, budgets=[16])
    rows = {row.name: row for row in result.rows}
    assert rows["bon@16"].accuracy.value == pytest.approx(0.6)
    assert rows["beam@16"].accuracy.value == pytest.approx(0.4)
    planner = rows["planner"]
    assert planner.accuracy.value == 1.0 and planner.missing == 0
    assert planner.choices == {"bon@4": 6, "beam@16": 4}
    # easy: bon@4 (its record, 40); hard: beam@16 (160) plus the whole probe (40)
    assert planner.flops == pytest.approx((6 * 40 + 4 * 200) / 10)
    assert planner.versus_best.value == pytest.approx(0.4)
    assert rows["planner (oracle bins)"].accuracy.value == 1.0
    assert result.predictor_accuracy == 1.0
    assert result.confusion["hard"]["hard"] == 4 and result.bin_counts == {"easy": 6, "hard": 4}
    assert result.target["name"] == "bon@16"
    assert result.flops_to_target["planner"] == pytest.approx(planner.flops)
    text = markdown(result, "test")
    assert "| 16 | planner | 100.0% |" in text and "bon@4 ×6" in text
    beyond = evaluate_plan(plan, outcomes, rates, budgets=[64])  # the prior's beam@64: unmeasured
    prior_row = next(r for r in beyond.rows if r.name == "prior rules")
    assert prior_row.problems == 0 and prior_row.missing == 10
    assert "| 64 | prior rules | n/a |  |" in markdown(beyond, "test")
    assert math.isclose(result.to_dict()["rows"][0]["accuracy"]["value"],
                        result.rows[0].accuracy.value)


def test_plan_notices_name_what_the_prior_decides():
    from ttscale.planner.auto import plan_notices

    plan = _calibrated_plan()
    notices = plan_notices(plan, [2, 8, 16, 64], "tiny", 10**9, "confidence")
    assert any("[2, 64] are outside" in n for n in notices)
    assert any("[8] were not calibrated" in n for n in notices)
    assert any(n.startswith("bin medium: only 0") for n in notices)
    other = plan_notices(plan, [16], "tiny", 10**9, "arithmetic")
    assert other == ["the plan was calibrated with scorer confidence, not arithmetic; the "
                     "prior rules decide"]
    assert plan_notices(prior_plan(10**9, "tiny", None, 4), [3], "tiny", 10**9, None) == []
    from ttscale.settings import SearchSettings

    plan.info["study"] = {"settings": {"temperature": 0.7, "max_step_tokens": 48}}
    hotter = plan_notices(plan, [16], "tiny", 10**9, "confidence",
                          SearchSettings(temperature=1.0, max_step_tokens=48))
    assert any("temperature 1.0 (calibrated: 0.7)" in n for n in hotter)
    assert not any("max_step_tokens" in n for n in hotter)


def _study(**changes):
    from ttscale.run.calibrate import StudyConfig
    from ttscale.run.runner import DatasetSelection

    return StudyConfig(dataset=DatasetSelection("gsm8k", limit=20), methods=("bon", "beam"),
                       budgets=(4, 16), probe_size=4, **changes)


def _synthetic_half():
    """12 problems: 4 easy (bon right, samples agree), 8 hard (beam right, samples scatter)."""
    outcomes, rates = {}, {}
    for i in range(12):
        easy = i < 4
        pid = f"p{i:02d}"
        outcomes[pid] = _problem(pid, {("bon", 4): (easy, 10.0), ("bon", 16): (easy, 40.0),
                                       ("beam", 4): (not easy, 12.0),
                                       ("beam", 16): (not easy, 50.0)},
                                 agreement=1.0 if easy else 0.25)
        rates[pid] = PassRate(pid, 7 if easy else 0, 8)
    return outcomes, rates


def test_build_plan_bins_fits_and_chooses_per_bin():
    from ttscale.run.calibrate import build_plan

    outcomes, rates = _synthetic_half()
    plan = build_plan(_study(min_problems=3), outcomes, rates,
                      policy={"name": "tiny", "parameters": 10**9}, width=4)
    assert plan.info["bin_counts"] == {"easy": 4, "medium": 0, "hard": 8}
    assert plan.info["predictor_accuracy_on_calibration"] == 1.0
    assert plan.info["pass_at_1"]["p00"]["bin"] == "easy"
    assert plan.info["bin_uncertain"] == 8  # 0 of 8 right cannot rule out pass@1 of 30 %
    assert (plan.choices["easy"][16].method, plan.choices["easy"][16].n) == ("bon", 4)
    assert (plan.choices["hard"][16].method, plan.choices["hard"][16].n) == ("beam", 4)
    assert "only 0 calibration problem" in plan.fallbacks["medium"]
    assert set(plan.fallbacks) == {"medium"}
    strict = build_plan(_study(min_problems=5), outcomes, rates,
                        policy={"name": "tiny", "parameters": 10**9}, width=4)
    assert set(strict.fallbacks) == {"easy", "medium"}  # 4 easy problems are too few


def test_build_plan_with_quantile_bins():
    from ttscale.run.calibrate import build_plan

    outcomes, rates = _synthetic_half()
    for k, pid in enumerate(sorted(rates)):
        rates[pid] = PassRate(pid, 8 - k % 9, 8)  # spread pass@1 out
    plan = build_plan(_study(bins="quantile:3", min_problems=1), outcomes, rates,
                      policy={"name": "tiny", "parameters": 10**9}, width=4)
    assert plan.binning.names == ("level1", "level2", "level3")
    assert sum(plan.info["bin_counts"].values()) == 12
    assert all(count >= 3 for count in plan.info["bin_counts"].values())
    decision = plan.decide("level3", 64, parameters=10**9)  # outside: prior, by rank "hard"
    assert decision.source == "prior" and decision.method == "beam"
