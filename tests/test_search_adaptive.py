"""Adaptive sampling (ESC, Adaptive-Consistency, adaptive Best-of-N) against a scripted policy
and scorer: each stops at the sample its rule names, never past the budget, on majority
vote's sample streams, with every sample charged and in the tree. No model runs here."""

from __future__ import annotations

import random
from dataclasses import replace
from fractions import Fraction

import pytest

from fakes import DELIM, END, PROMPT, ScriptedPolicy, ScriptedScorer, make_ctx, run
from ttscale.compute import TokenCount
from ttscale.errors import ConfigError
from ttscale.search import MethodSpec
from ttscale.search.adaptive import (
    ADAPTIVE_SC_THRESHOLD,
    DIRICHLET_TOP_K,
    ESC_WINDOW,
    AdaptiveDetails,
    adaptive_best_of_n,
    adaptive_consistency,
    adaptive_consistency_dirichlet,
    beta_probability,
    criterion_probability,
    dirichlet_probability,
    early_stopping_sc,
    samples_until_criterion,
)
from ttscale.search.aggregate import choose
from ttscale.search.best_of_n import majority_vote, sample_solutions, score_candidates

FIRST_STEP_SCORE = 0.25


def scripted(answers, scores=None, first_scores=None):
    """Sample j writes two steps, the second boxing ``answers[j]`` (no answer for None) and
    scored ``scores[j]``; a sample past the script fails, so a run that overdraws fails."""
    def respond(prefix, j, stop):
        answer = answers[j]
        score = scores[j] if scores is not None else 0.5
        first = first_scores[j] if first_scores is not None else FIRST_STEP_SCORE
        ending = f"so the answer is \\boxed{{{answer}}}" if answer is not None else "no answer"
        text = (f"Step 1: sample={j} [s={first:.3f}]" + DELIM
                + f"Step 2: sample={j} {ending} [s={score:.3f}]")
        return text + END + " junk after the end", "eos"
    return respond




def search(method, n, answers, scores=None, scorer=None, first_scores=None, **settings):
    policy = ScriptedPolicy(scripted(answers, scores, first_scores))
    scorer = scorer if scorer is not None else ScriptedScorer()
    ctx = make_ctx(policy, scorer, **settings)
    return run(method(ctx, n)), policy, scorer, ctx


def calls_summary(policy):
    return [(call.first_sample, call.n) for call in policy.calls]


# --------------------------------------------------------------------------------------------
# What all three share
# --------------------------------------------------------------------------------------------

# a script each method stops on early: ESC after window 2, Adaptive-Consistency at sample 7,
# adaptive Best-of-N at sample 8 (worked out in the tests of each method)
MIXED = ["7", "8", "7", "7", "7", "7", "7", "7", "7", "7", "8", "8"]
MIXED_SCORES = [1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
METHODS = {"esc": early_stopping_sc, "adaptive_sc": adaptive_consistency,
           "adaptive_bon": adaptive_best_of_n}
STOPS = {"esc": 10, "adaptive_sc": 7, "adaptive_bon": 8}


@pytest.fixture(params=sorted(METHODS))
def mixed(request):
    name = request.param
    result, policy, scorer, ctx = search(METHODS[name], len(MIXED), MIXED, MIXED_SCORES)
    return name, result, policy, scorer, ctx


def test_each_stops_at_its_sample_and_records_why(mixed):
    name, result, policy, _, _ = mixed
    details = result.details
    assert isinstance(details, AdaptiveDetails) and details.record_key == "adaptive"
    assert result.method == name and result.n == len(MIXED) and result.width is None
    assert details.drawn == len(result.candidates) == STOPS[name]
    assert sum(details.windows) == details.drawn and details.reused == 0
    assert details.stopped_by in ("agreement", "criterion", "leader_safe")
    record = details.to_dict()
    assert {"method", "budget", "drawn", "reused", "windows", "stopped_by"} <= set(record)
    assert record["drawn"] == STOPS[name] and record["windows"] == list(details.windows)


def test_the_samples_are_majority_votes_first_streams(mixed):
    _, result, policy, _, _ = mixed
    k = len(result.candidates)
    starts = [0]
    for window in result.details.windows[:-1]:
        starts.append(starts[-1] + window)
    assert calls_summary(policy) == list(zip(starts, result.details.windows, strict=True))
    for call in policy.calls:
        assert (call.prefixes, call.stop, call.seed, call.temperature) == (
            (PROMPT,), (END,), 0, 0.7)
    fresh = run(sample_solutions(make_ctx(ScriptedPolicy(scripted(MIXED, MIXED_SCORES))), k))
    voted = run(majority_vote(make_ctx(ScriptedPolicy(scripted(MIXED, MIXED_SCORES))), k))
    assert [c.steps for c in result.candidates] == [c.steps for c in fresh] \
        == [c.steps for c in voted.candidates]


def test_the_ledger_charges_exactly_the_samples_drawn(mixed):
    name, result, policy, scorer, _ = mixed
    ledger = result.ledger
    continuations = policy.continuations
    assert len(continuations) == len(result.candidates)
    assert ledger.policy == TokenCount(
        prompt=sum(len(p.split()) * call.n for call in policy.calls for p in call.prefixes),
        generated=sum(c.generated_tokens for c in continuations))
    assert ledger.policy_calls == len(policy.calls) == len(result.details.windows)
    if name == "adaptive_bon":  # every sample scored once, when it was drawn
        scored = [s for call in scorer.calls for s in call.solutions]
        assert scored == [[s.text for s in c.steps] for c in result.candidates]
        assert ledger.scorer == TokenCount.total(scorer.charged)
        assert ledger.scorer_calls == len(scorer.calls) == len(policy.calls)
    else:  # self-consistency never asks the scorer, even when one is given
        assert scorer.calls == [] and ledger.scorer_calls == 0
        assert all(c.step_scores is None for c in result.candidates)


def test_the_tree_holds_every_sample_as_a_finished_chain(mixed):
    name, result, _, _, _ = mixed
    tree = result.tree
    assert len(tree.root.children) == len(result.candidates)
    assert len(tree.nodes) == 1 + 2 * len(result.candidates)
    for j, candidate in enumerate(result.candidates):
        chain = tree.path(tree.nodes[candidate.node_id])
        assert [n.step for n in chain] == list(candidate.steps)
        assert [n.status for n in chain] == ["kept", "finished"]
        assert chain[-1].finish_reason == "stop" and chain[-1].children == []
        assert candidate.answer == MIXED[j]
        if name == "adaptive_bon":
            assert candidate.step_scores == (FIRST_STEP_SCORE, MIXED_SCORES[j])
            assert [n.score for n in chain] == [FIRST_STEP_SCORE, MIXED_SCORES[j]]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_seed_same_run(name):
    def once():
        result, _, _, _ = search(METHODS[name], len(MIXED), MIXED, MIXED_SCORES, seed=5)
        return result.candidates, result.tree.to_dict(), result.details.to_dict()

    assert once() == once()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_reused_solutions_are_the_first_samples(name):
    # the planner's probe drew (and scored) samples 0..2 in the same tree and ledger
    policy = ScriptedPolicy(scripted(MIXED, MIXED_SCORES))
    scorer = ScriptedScorer()
    ctx = make_ctx(policy, scorer)
    probe = run(score_candidates(ctx, run(sample_solutions(ctx, 3))))
    result = run(METHODS[name](replace(ctx, reuse=tuple(probe)), len(MIXED)))
    assert result.details.drawn == STOPS[name] and result.details.reused == 3
    assert policy.calls[1].first_sample == 3  # the first draw after the probe
    assert [c.node_id for c in result.candidates[:3]] == [c.node_id for c in probe]
    assert len(result.tree.root.children) == STOPS[name]  # nothing drawn twice
    if name == "adaptive_bon":  # the probe's scores are kept, not bought again
        assert sum(len(call.solutions) for call in scorer.calls) == STOPS[name]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_budget_below_one_is_refused(name):
    with pytest.raises(ValueError, match="at least 1"):
        search(METHODS[name], 0, MIXED)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_never_more_than_the_budget(name):
    # disagreeing answers: every method runs to its budget and not one sample past it
    # (the script fails on a sample past its end)
    for n in (1, 2, 3, 6, 11):
        answers = [str(j % 2) for j in range(n)]
        result, policy, _, _ = search(METHODS[name], n, answers, [1.0] * n)
        assert result.details.drawn == len(result.candidates) == n
        assert sum(call.n for call in policy.calls) == n
        assert result.details.stopped_by in ("budget", "leader_safe")


def test_registry_entries_take_any_budget():
    specs = [MethodSpec("esc", early_stopping_sc, False, False, False, "ESC"),
             MethodSpec("adaptive_sc", adaptive_consistency, False, False, False, "AC"),
             MethodSpec("adaptive_bon", adaptive_best_of_n, True, False, False, "ABoN")]
    for spec in specs:
        spec.check_budget(7, width=4)  # no multiple of the width needed
        result = run(spec.run(make_ctx(ScriptedPolicy(scripted(MIXED, MIXED_SCORES)),
                                       ScriptedScorer()), 7))
        assert result.method == spec.name and len(result.candidates) <= 7


# --------------------------------------------------------------------------------------------
# Early-Stopping Self-Consistency
# --------------------------------------------------------------------------------------------


class TestESC:
    def test_stops_after_the_first_unanimous_window(self):
        # windows: {7, 8}, {7, 9}, then five 8s: stop at sample 15
        answers = ["7", "8", "7", "7", "7", "7", "7", "9", "7", "7"] + ["8"] * 5 + ["7"] * 25
        result, policy, _, _ = search(early_stopping_sc, 40, answers)
        assert ESC_WINDOW == 5
        assert calls_summary(policy) == [(0, 5), (5, 5), (10, 5)]
        assert result.details.windows == (5, 5, 5)
        assert (result.details.drawn, result.details.stopped_by) == (15, "agreement")
        # the answer is the majority over all 15 samples (7: 8 votes), not the window's 8
        selection, _ = choose(result.candidates, "last", "majority")
        assert selection.answer == "7"

    def test_the_first_window_agreeing_stops_at_five(self):
        result, policy, _, _ = search(early_stopping_sc, 40, MIXED[2:7] + ["8"] * 35)
        assert calls_summary(policy) == [(0, 5)]
        assert result.details.stopped_by == "agreement"

    def test_equivalent_answers_agree(self):
        answers = ["0.5", "\\frac{1}{2}", "1/2", "0.5", "\\dfrac{1}{2}"] + ["3"] * 5
        result, _, _, _ = search(early_stopping_sc, 10, answers)
        assert (result.details.drawn, result.details.stopped_by) == (5, "agreement")

    def test_a_window_with_an_unanswered_sample_does_not_agree(self):
        answers = ["7", "7", None, "7", "7"] + ["7"] * 5 + ["8"] * 5
        result, _, _, _ = search(early_stopping_sc, 15, answers)
        assert (result.details.drawn, result.details.stopped_by) == (10, "agreement")

    def test_a_last_shorter_window_spends_the_rest_of_the_budget(self):
        answers = ["1", "2"] * 5 + ["3", "3"]
        result, policy, _, _ = search(early_stopping_sc, 12, answers)
        assert calls_summary(policy) == [(0, 5), (5, 5), (10, 2)]
        assert (result.details.drawn, result.details.stopped_by) == (12, "budget")

    def test_a_budget_below_the_window_is_one_short_window(self):
        result, policy, _, _ = search(early_stopping_sc, 3, ["4"] * 3)
        assert calls_summary(policy) == [(0, 3)]
        assert result.details.stopped_by == "budget"


# --------------------------------------------------------------------------------------------
# Adaptive-Consistency
# --------------------------------------------------------------------------------------------


def beta_integral(a: int, b: int, steps: int = 20000) -> float:
    """The reference's criterion as it writes it: the integral of x^a (1-x)^b over [1/2, 1]
    over that over [0, 1], by Simpson's rule."""
    def simpson(lo, hi):
        h = (hi - lo) / steps
        f = [(lo + i * h) ** a * (1 - lo - i * h) ** b for i in range(steps + 1)]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    return simpson(0.5, 1.0) / simpson(0.0, 1.0)


def dirichlet_a_1_1(a: int) -> Fraction:
    """P(leader largest) for counts (a, 1, 1), worked by hand from the Erlang form (G_0 the
    leader's): one, less P(G_j > G_0) = (a + 3) / 2^(a + 2) for each of the two others, plus
    P(both > G_0) = (9 + 6(a + 1) + (a + 1)(a + 2)) / 3^(a + 3)."""
    return (1 - Fraction(a + 3, 2 ** (a + 1))
            + Fraction(9 + 6 * (a + 1) + (a + 1) * (a + 2), 3 ** (a + 3)))


class TestAdaptiveConsistency:
    def test_beta_criterion_by_hand(self):
        assert beta_probability(1, 0) == Fraction(3, 4)
        assert beta_probability(1, 1) == Fraction(1, 2)
        assert beta_probability(3, 0) == Fraction(15, 16)  # three agreeing: not yet
        assert beta_probability(4, 0) == Fraction(31, 32)  # four agreeing: stop
        assert beta_probability(5, 1) == Fraction(120, 128)
        assert beta_probability(6, 1) == Fraction(247, 256)

    @pytest.mark.parametrize(("a", "b"), [(0, 0), (1, 0), (3, 1), (6, 1), (5, 4), (9, 2)])
    def test_beta_criterion_is_the_references_integral(self, a, b):
        assert float(beta_probability(a, b)) == pytest.approx(beta_integral(a, b), abs=1e-9)

    def test_dirichlet_criterion_by_hand(self):
        assert dirichlet_probability([1, 0, 0]) == Fraction(11, 18)
        assert dirichlet_probability([2, 2, 2]) == Fraction(1, 3)  # symmetric: one in three
        assert dirichlet_probability([3, 3, 3, 3]) == Fraction(1, 4)
        for a in range(10):
            assert dirichlet_probability([a, 1, 1]) == dirichlet_a_1_1(a)
        for a, b in [(1, 0), (4, 0), (6, 1), (5, 3)]:  # two answers: the Beta criterion
            assert dirichlet_probability([a, b]) == beta_probability(a, b)

    def test_dirichlet_is_at_most_beta_and_needs_three_answers(self):
        for counts in ([4, 1, 1], [6, 2, 1, 1], [5, 5, 1], [9, 3, 2, 2, 1]):
            assert criterion_probability(counts, "dirichlet") <= beta_probability(*counts[:2])
        assert criterion_probability([6, 1], "dirichlet") == beta_probability(6, 1)
        # only the five most frequent answers enter it
        assert DIRICHLET_TOP_K == 5
        assert criterion_probability([9, 3, 2, 2, 1, 1], "dirichlet") \
            == dirichlet_probability([9, 3, 2, 2, 1])
        with pytest.raises(ValueError, match="unknown stopping criterion"):
            criterion_probability([1], "entropy")

    def test_four_agreeing_samples_stop_it(self):
        result, policy, _, _ = search(adaptive_consistency, 40, ["5"] * 40)
        assert ADAPTIVE_SC_THRESHOLD == 0.95
        assert calls_summary(policy) == [(0, 4)]
        assert result.details.stopped_by == "criterion"
        assert result.details.evidence["probability"] == 31 / 32

    def test_beta_crosses_the_threshold_at_the_seventh_sample(self):
        # counts (1,0) (1,1) (2,1) (3,1) (4,1) (5,1) (6,1): 3/4 1/2 11/16 13/16 57/64 15/16
        # 247/256 -- the first at least 0.95 is the seventh; windows: 4 samples can first stop
        # it from (0, 0), 3 from (3, 1)
        result, policy, _, _ = search(adaptive_consistency, len(MIXED), MIXED)
        assert samples_until_criterion([], 0.95) == 4
        assert samples_until_criterion([3, 1], 0.95) == 3
        assert calls_summary(policy) == [(0, 4), (4, 3)]
        evidence = result.details.evidence
        assert (result.details.drawn, result.details.stopped_by) == (7, "criterion")
        assert (evidence["probability"], evidence["counts"]) == (247 / 256, [6, 1])
        assert evidence["criterion"] == "beta"

    def test_dirichlet_waits_for_one_more_sample_with_three_answers(self):
        # counts (a, 1, 1): Beta reaches 0.95 at a = 6 (sample 8); the Dirichlet criterion is
        # 0.935 there and 0.963 at a = 7 (sample 9)
        answers = ["7", "8", "9"] + ["7"] * 17
        assert dirichlet_a_1_1(6) < Fraction(0.95) <= dirichlet_a_1_1(7)
        beta, _, _, _ = search(adaptive_consistency, 20, answers)
        result, policy, _, _ = search(adaptive_consistency_dirichlet, 20, answers)
        assert beta.details.drawn == 8
        assert calls_summary(policy) == [(0, 4), (4, 4), (8, 1)]
        assert (result.details.drawn, result.details.stopped_by) == (9, "criterion")
        assert result.details.evidence["probability"] == float(dirichlet_a_1_1(7))

    @pytest.mark.parametrize("criterion", ["beta", "dirichlet"])
    def test_stops_at_the_first_sample_the_criterion_passes(self, criterion):
        # checking after every sample, as the reference does, names the same sample
        rng = random.Random(7)
        for trial in range(25):
            n = rng.randint(1, 30)
            answers = [rng.choice("1112234") for _ in range(n)]
            expected = n
            for k in range(1, n + 1):
                counts = sorted((answers[:k].count(a) for a in set(answers[:k])), reverse=True)
                if criterion_probability(counts, criterion) >= Fraction(0.95):
                    expected = k
                    break
            result, policy, _, _ = search(
                lambda ctx, n: adaptive_consistency(ctx, n, criterion), n, answers)
            assert result.details.drawn == expected, (trial, answers)
            assert sum(call.n for call in policy.calls) == expected

    def test_unanswered_samples_do_not_vote(self):
        result, _, _, _ = search(adaptive_consistency, 10, [None, None] + ["3"] * 8)
        assert result.details.drawn == 6 and result.details.evidence["counts"] == [4]


# --------------------------------------------------------------------------------------------
# Adaptive Best-of-N
# --------------------------------------------------------------------------------------------


class NonPointwiseScorer(ScriptedScorer):
    pointwise = False


class TestAdaptiveBestOfN:
    def test_stops_when_the_leader_is_safe(self):
        # N = 12; "8" holds sample 1 (weight 1), "7" the others (MIXED_SCORES). The margin
        # against the samples left: k=6: 4 - 1 = 3 <= 6; k=7: 5 - 1 = 4 <= 5; k=8: 5.5 - 1 =
        # 4.5 > 4: safe at the eighth sample
        result, policy, scorer, _ = search(adaptive_best_of_n, 12, MIXED, MIXED_SCORES)
        # first window: margin 0, 12 left: 7 samples could first make it safe (7 > 5)
        assert calls_summary(policy) == [(0, 7), (7, 1)]
        assert [len(call.solutions) for call in scorer.calls] == [7, 1]
        details = result.details
        assert (details.drawn, details.stopped_by) == (8, "leader_safe")
        assert details.evidence["leader_margin"] == 4.5 and details.evidence["remaining"] == 4

    def test_a_margin_equal_to_the_samples_left_is_not_safe(self):
        # N = 10, all "7" scored 1 but sample 1 ("8", 1): after 6, margin 5 - 1 = 4 = 4 left
        # (the runner-up could tie); after 7, 5 > 3
        answers = ["7", "8"] + ["7"] * 8
        result, policy, _, _ = search(adaptive_best_of_n, 10, answers, [1.0] * 10)
        assert calls_summary(policy) == [(0, 6), (6, 1)]
        assert result.details.drawn == 7

    def test_the_step_aggregation_sets_the_weights(self):
        # every sample "7", steps scored 0.5 then 1.0, N = 10
        # last: weight 1, safe at k > 10 - k, k = 6; min: weight 1/2, safe at k/2 > 10 - k, k = 7
        answers, last, first = ["7"] * 10, [1.0] * 10, [0.5] * 10
        by_last, _, _, _ = search(adaptive_best_of_n, 10, answers, last, first_scores=first,
                                  step_aggregation="last")
        by_min, policy, _, _ = search(adaptive_best_of_n, 10, answers, last,
                                      first_scores=first, step_aggregation="min")
        assert by_last.details.drawn == 6
        assert by_min.details.drawn == 7 and calls_summary(policy) == [(0, 6), (6, 1)]
        assert by_min.details.evidence["step_aggregation"] == "min"

    def test_runs_to_the_budget_when_the_vote_stays_close(self):
        answers = ["1", "2"] * 5
        result, policy, scorer, _ = search(adaptive_best_of_n, 10, answers, [1.0] * 10)
        assert (result.details.drawn, result.details.stopped_by) == (10, "budget")
        assert sum(len(call.solutions) for call in scorer.calls) == 10

    def test_a_batch_dependent_scorer_rescores_every_sample_together(self):
        scorer = NonPointwiseScorer()
        result, policy, _, _ = search(adaptive_best_of_n, 12, MIXED, MIXED_SCORES,
                                      scorer=scorer)
        assert [len(call.solutions) for call in scorer.calls] == [7, 8]
        assert result.ledger.scorer == TokenCount.total(scorer.charged)
        assert all(c.step_scores is not None for c in result.candidates)

    def test_needs_a_scorer(self):
        policy = ScriptedPolicy(scripted(MIXED))
        with pytest.raises(ConfigError, match="needs a scorer"):
            run(adaptive_best_of_n(make_ctx(policy, None), 12))
