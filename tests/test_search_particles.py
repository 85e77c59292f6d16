"""Particle filtering and particle Gibbs against a scripted policy and scorer: resampling by
weight, the particles every round, the tree and the record they leave. No model runs here."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from fractions import Fraction

import pytest

from fakes import (
    DELIM,
    END,
    PROMPT,
    ScriptedPolicy,
    ScriptedScorer,
    Stepper,
    assert_ledger_charges_every_call,
    hashed_score,
    make_ctx,
    marked_score,
    path_of,
    prefix_of,
    requested,
)
from ttscale.errors import ConfigError
from ttscale.search.best_of_n import sample_solutions
from ttscale.search.methods import MethodSpec
from ttscale.search.particle_filtering import (
    GIBBS_SWEEPS,
    SCORE_CLIP,
    draw_ancestors,
    gibbs_sweep_sizes,
    particle_filtering,
    particle_gibbs,
    resampling_rng,
    resampling_weights,
)
from ttscale.settings import MAX_PARTICLE_TEMPERATURE, SearchSettings

DONE = ("finished", "truncated")


def search(method, n, stepper=None, scorer=True, **settings):
    policy = ScriptedPolicy(stepper or Stepper(answer_depth=3))
    scorer_obj = ScriptedScorer() if scorer else None
    ctx = make_ctx(policy, scorer_obj, **settings)
    return asyncio.run(method(ctx, n)), policy, scorer_obj


def calls_by_depth(policy) -> dict[int, list]:
    """Engine calls by the depth of the step they sample (prefixes of a call share a depth)."""
    by_depth: dict[int, list] = {}
    for call in policy.calls:
        [depth] = {p[len(PROMPT):].count(DELIM) + 1 for p in call.prefixes}
        by_depth.setdefault(depth, []).append(call)
    return by_depth


def odds_weights(scores) -> list[Fraction]:
    """The exact weights at temperature 1: each particle's odds s / (1 - s), normalized."""
    odds = [Fraction(s) / (1 - Fraction(s)) for s in scores]
    return [o / sum(odds) for o in odds]


def tempered_weights(scores, temperature: float) -> list[float]:
    """The weights at a temperature: each particle's odds to the power 1 / T, normalized."""
    powered = [float(w) ** (1 / temperature) for w in odds_weights(scores)]
    return [p / sum(powered) for p in powered]


# the first steps' scores (odds 1, 3, 4, 1/4); deeper steps score 0.5
FIRST_SCORES = (Fraction(1, 2), Fraction(3, 4), Fraction(4, 5), Fraction(1, 5))


def first_step_scores(path):
    return float(FIRST_SCORES[path[0]]) if len(path) == 1 else 0.5


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


class TestWeights:
    def test_the_weight_is_the_normalized_odds_at_temperature_one(self):
        assert SearchSettings().particle_temperature == 1.0  # the paper's default
        weights = resampling_weights([float(s) for s in FIRST_SCORES])
        assert weights == pytest.approx([float(w) for w in odds_weights(FIRST_SCORES)],
                                        abs=1e-12)
        assert weights == pytest.approx([4 / 33, 12 / 33, 16 / 33, 1 / 33], abs=1e-12)

    def test_a_lower_temperature_sharpens_the_weights(self):
        # odds 1 and 3, squared at temperature 1/2: 1 and 9
        assert resampling_weights([0.5, 0.75], 0.5) == pytest.approx([0.1, 0.9], abs=1e-12)
        assert resampling_weights([0.5, 0.75], 2.0) == pytest.approx(
            [1 / (1 + 3 ** 0.5), 3 ** 0.5 / (1 + 3 ** 0.5)], abs=1e-12)

    def test_a_higher_temperature_flattens_a_coarse_scorers_weights(self):
        # arith scores a step 0, 0.5 or 1: clipped, their odds are 1e-7, 1 and 1e7, so at
        # temperature 1 the best particle takes all the weight; at T the odds are raised to 1/T
        best = (1 - SCORE_CLIP) / SCORE_CLIP
        previous_top = 1.0
        for temperature in (1.0, 4.0, 8.0, 16.0, MAX_PARTICLE_TEMPERATURE):
            raw = [best ** (1 / temperature), 1.0, best ** (-1 / temperature)]
            weights = resampling_weights([1.0, 0.5, 0.0], temperature)
            assert weights == pytest.approx([w / sum(raw) for w in raw], rel=1e-9)
            assert weights[0] < previous_top  # each higher temperature flattens them further
            previous_top = weights[0]
        assert resampling_weights([1.0, 0.5], 1.0)[1] < 1e-6  # one particle into every slot
        assert resampling_weights([1.0, 0.5], 8.0)[0] / resampling_weights([1.0, 0.5], 8.0)[1] \
            == pytest.approx(math.exp(math.log(best) / 8), rel=1e-9)  # about e**2
        # at the largest temperature allowed, any two particles are within 3.3 % of each other
        flattest = resampling_weights([1.0, 0.0], MAX_PARTICLE_TEMPERATURE)
        assert 1 < flattest[0] / flattest[1] < 1.033

    def test_equal_scores_weigh_equally(self):
        assert resampling_weights([0.3] * 4) == pytest.approx([0.25] * 4, abs=1e-12)

    def test_scores_of_zero_and_one_are_clipped(self):
        weights = resampling_weights([0.0, 1.0, 0.5])
        assert all(w > 0 for w in weights) and sum(weights) == pytest.approx(1.0, abs=1e-12)
        assert weights[0] == pytest.approx(1e-14, rel=1e-3)  # odds 1e-7 against 1e7

    def test_ancestors_follow_the_weights_exactly_in_the_limit(self):
        # 0 weight is never drawn; all the weight on one index draws it every time
        rng = resampling_rng(make_ctx(ScriptedPolicy(Stepper())))
        assert set(draw_ancestors(rng, [0.0, 1.0, 0.0], 50)) == {1}


# --------------------------------------------------------------------------------------------
# Resampling follows the weights (the defining property)
# --------------------------------------------------------------------------------------------


class TestResamplingFrequencies:
    N = 4
    SEEDS = 500  # 2000 draws in the first round

    @pytest.mark.parametrize("temperature", [1.0, 4.0])
    def test_offspring_shares_match_the_weights(self, temperature):
        # particle 0 finishes at its first step: a finished particle is drawn by its weight too
        stepper = Stepper(boxes=lambda path: path == (0,) or len(path) >= 3,
                          score=first_step_scores)
        expected_weights = tempered_weights(FIRST_SCORES, temperature)
        offspring: Counter = Counter()
        for seed in range(self.SEEDS):
            result, _, _ = search(particle_filtering, self.N, stepper, seed=seed,
                                  particle_temperature=temperature)
            [sweep] = result.details.sweeps
            first = sweep.rounds[0]
            assert result.details.temperature == temperature
            assert first.weights == pytest.approx(expected_weights, abs=1e-12)
            offspring.update(first.ancestors)
            # the tree agrees: an open first step has one child per particle drawn from it
            for i, node_id in enumerate(first.nodes):
                node = result.tree.nodes[node_id]
                if node.status != "finished":
                    assert len(node.children) == first.ancestors.count(i)
        draws = self.N * self.SEEDS
        assert sum(offspring.values()) == draws
        # at temperature 1: 2000 * (4, 12, 16, 1) / 33; at 4: their fourth roots, normalized
        expected = [draws * w for w in expected_weights]
        chi_square = sum((offspring[i] - e) ** 2 / e for i, e in enumerate(expected))
        # 3 degrees of freedom: P(chi2 > 25) < 2e-5, so a correct sampler passes, and a
        # sampler that ignores the weights (uniform: chi2 near 3800 at temperature 1), takes
        # the best, or draws by the other temperature's weights (chi2 above 500) fails
        assert chi_square < 25, (offspring, [float(e) for e in expected])


# --------------------------------------------------------------------------------------------
# Particle filtering
# --------------------------------------------------------------------------------------------


def rounds_of(result):
    [sweep] = result.details.sweeps
    return sweep.rounds


class TestParticleFiltering:
    N = 8
    # a few particles box early, all by depth 4
    BOXES = staticmethod(lambda path: path[-1] % 4 == 3 or len(path) >= 4)

    def run(self, stepper=None, **settings):
        return search(particle_filtering, self.N, stepper or Stepper(boxes=self.BOXES),
                      **settings)

    def test_first_round_samples_one_step_per_particle_from_the_root(self):
        _, policy, _ = self.run(max_step_tokens=77, temperature=0.6, seed=5)
        first = policy.calls[0]
        assert (first.prefixes, first.n) == ((PROMPT,), self.N)
        assert (first.stop, first.max_tokens) == ((DELIM, END), 77)
        assert (first.temperature, first.seed) == (0.6, 5)

    def test_exactly_n_particles_are_alive_every_round(self):
        result, policy, _ = self.run()
        rounds = rounds_of(result)
        assert len(rounds) == 4  # one per depth: a particle reaches depth 4
        for r in rounds:
            assert len(r.nodes) == len(r.weights) == self.N
            assert sum(r.weights) == pytest.approx(1.0, abs=1e-12)
            assert r.ancestors is None or len(r.ancestors) == self.N
        assert [r.ancestors is None for r in rounds] == [False, False, False, True]
        # every round samples one step for each particle that has not finished, never more
        live = [sum(result.tree.nodes[i].status not in DONE for i in r.nodes) for r in rounds]
        samples = {d: sum(c.samples for c in calls) for d, calls in
                   calls_by_depth(policy).items()}
        assert samples[1] == self.N
        for depth in (2, 3, 4):
            previous = rounds[depth - 2]
            drawn = [previous.nodes[a] for a in previous.ancestors]
            assert samples[depth] == sum(result.tree.nodes[i].status not in DONE
                                         for i in drawn) <= self.N
        assert live[-1] == 0

    def test_each_particle_steps_from_its_own_prefix(self):
        result, policy, _ = self.run()
        tree, rounds = result.tree, rounds_of(result)
        by_depth = calls_by_depth(policy)
        for depth in (2, 3, 4):
            previous = rounds[depth - 2]
            open_drawn = [tree.nodes[previous.nodes[a]] for a in previous.ancestors
                          if tree.nodes[previous.nodes[a]].status not in DONE]
            assert requested(by_depth[depth]) == Counter(prefix_of(tree, x) for x in open_drawn)
            # and the particles of this round stand on those nodes' new children
            current = rounds[depth - 1]
            parents = Counter(tree.nodes[i].parent for i in current.nodes
                              if tree.nodes[i].depth == depth)
            assert parents == Counter(x.id for x in open_drawn)

    def test_particle_j_continues_ancestor_j(self):
        result, _, _ = self.run()
        tree, rounds = result.tree, rounds_of(result)
        for previous, current in zip(rounds, rounds[1:], strict=False):
            for j, a in enumerate(previous.ancestors):
                ancestor, now = tree.nodes[previous.nodes[a]], tree.nodes[current.nodes[j]]
                if ancestor.status in DONE:
                    assert now is ancestor  # a finished particle's copy stands where it ended
                else:
                    assert now.parent == ancestor.id

    def test_the_tree_records_which_particles_were_resampled_away(self):
        result, policy, _ = self.run()
        tree, rounds = result.tree, rounds_of(result)
        assert len(tree.nodes) - 1 == sum(c.samples for c in policy.calls)
        for depth, r in enumerate(rounds[:-1], start=1):
            drawn = {r.nodes[a] for a in r.ancestors}
            for node in (x for x in tree.nodes if x.depth == depth):
                if "\\boxed" in node.step.text:
                    assert node.status == "finished" and node.children == []
                elif node.id in drawn:
                    assert node.status == "kept"
                    assert len(node.children) == sum(r.nodes[a] == node.id for a in r.ancestors)
                else:
                    assert node.status == "pruned" and node.children == []
        assert {x.status for x in tree.nodes[1:]} == {"kept", "pruned", "finished"}
        for node in tree.nodes[1:]:
            assert node.score == marked_score(node.step.text)

    def test_finished_particles_are_kept_with_their_final_weight(self):
        # the first step of sample 0 boxes at once and scores high: it stays a particle
        scores = {(0,): 0.99}
        stepper = Stepper(boxes=lambda path: path == (0,) or len(path) >= 4,
                          score=lambda path: scores.get(path, hashed_score(path)))
        result, policy, _ = self.run(stepper)
        tree, rounds = result.tree, rounds_of(result)
        [done] = [x for x in tree.nodes if x.depth == 1 and x.status == "finished"]
        assert path_of(done.step.text) == (0,)
        assert done.children == []  # never extended again
        assert not any(done.step.text in p for c in policy.calls for p in c.prefixes)
        for r in rounds:
            assert done.id in r.nodes  # a particle in every round
            weights = resampling_weights([tree.nodes[i].score for i in r.nodes])
            assert r.weights == tuple(weights)
            assert len({w for i, w in zip(r.nodes, r.weights, strict=True) if i == done.id}) == 1
        assert done.id in result.details.sweeps[0].final
        assert done.id in [c.node_id for c in result.candidates]

    def test_a_resampling_that_draws_only_finished_particles_ends_the_search(self):
        # sample 0 finishes at once with odds 1e7 against 1e-3: both particles copy it
        scores = {(0,): 0.9999999, (1,): 0.001}
        stepper = Stepper(boxes=lambda path: path == (0,) or len(path) >= 4,
                          score=lambda path: scores.get(path, 0.5))
        result, policy, scorer = search(particle_filtering, 2, stepper)
        [only] = rounds_of(result)
        assert only.ancestors == (0, 0)
        assert len(policy.calls) == len(scorer.calls) == 1
        assert [result.tree.nodes[i].status for i in only.nodes] == ["finished", "pruned"]
        assert [c.node_id for c in result.candidates] == [only.nodes[0]] * 2

    def test_candidates_are_the_final_particles_with_their_step_scores(self):
        result, _, _ = self.run()
        [sweep] = result.details.sweeps
        assert [c.node_id for c in result.candidates] == list(sweep.final)
        assert list(sweep.final) == list(rounds_of(result)[-1].nodes)
        assert len(result.candidates) == self.N
        for candidate in result.candidates:
            leaf = result.tree.nodes[candidate.node_id]
            assert leaf.status == "finished" and candidate.answer == "7"
            assert candidate.step_scores == tuple(marked_score(s.text) for s in candidate.steps)
            assert [n.step for n in result.tree.path(leaf)] == list(candidate.steps)
        assert (result.method, result.n, result.width) == ("pf", self.N, None)

    def test_every_call_is_charged_to_the_ledger(self):
        result, policy, scorer = self.run()
        check_ledger(result, policy, scorer)
        assert result.ledger.scorer_calls == len(scorer.calls) == len(rounds_of(result))

    def test_same_seed_same_search(self):
        one, _, _ = self.run(seed=3)
        two, _, _ = self.run(seed=3)
        other, _, _ = self.run(seed=4)
        assert same_search(one, two)
        assert one.details.to_dict() != other.details.to_dict()

    def test_the_depth_limit_ends_with_whole_solutions(self):
        result, policy, _ = self.run(Stepper(answer_depth=5), max_depth=2,
                                     max_solution_tokens=400)
        last = calls_by_depth(policy)[2]
        assert {(c.stop, c.max_tokens) for c in last} == {((END,), 400)}
        assert all(result.tree.nodes[c.node_id].status == "finished"
                   for c in result.candidates)
        assert all(c.answer == "7" for c in result.candidates)

    def test_without_scorer_every_particle_weighs_the_same(self):
        result, _, _ = search(particle_filtering, 4, Stepper(answer_depth=3), scorer=False)
        for r in rounds_of(result):
            assert r.weights == pytest.approx([0.25] * 4, abs=1e-12)

    def test_reused_solutions_are_the_first_round(self):
        # the planner's probe (or a pool) holds the root's first samples: they are not drawn
        policy = ScriptedPolicy(Stepper(answer_depth=3))
        ctx = make_ctx(policy, ScriptedScorer())
        reuse = asyncio.run(sample_solutions(ctx, 2))
        ctx.reuse = tuple(reuse)
        probe_calls = len(policy.calls)
        result = asyncio.run(particle_filtering(ctx, 4))
        first = policy.calls[probe_calls]
        assert (first.prefixes, first.n, first.first_sample) == ((PROMPT,), 2, 2)
        firsts = [result.tree.nodes[i] for i in rounds_of(result)[0].nodes]
        assert [path_of(x.step.text) for x in firsts] == [(0,), (1,), (2,), (3,)]


def check_ledger(result, policy, scorer):
    assert_ledger_charges_every_call(result.ledger, policy, scorer)


def same_search(one, two) -> bool:
    return (one.candidates == two.candidates
            and one.tree.to_dict() == two.tree.to_dict()
            and one.details.to_dict() == two.details.to_dict())


# --------------------------------------------------------------------------------------------
# Particle Gibbs
# --------------------------------------------------------------------------------------------


class TestTheTemperatureSetting:
    @pytest.mark.parametrize("bad", [0.0, -1.0, MAX_PARTICLE_TEMPERATURE * 2, float("nan")])
    def test_a_temperature_out_of_range_is_refused(self, bad):
        with pytest.raises(ConfigError, match="particle_temperature must be above 0 and at "
                                              "most 1000"):
            SearchSettings(particle_temperature=bad)

    def test_it_enters_a_run_identity_only_when_set(self):
        # runs recorded before the setting existed keep their identity, and so resume
        assert "particle_temperature" not in SearchSettings().identity()
        assert SearchSettings(particle_temperature=8.0).identity()["particle_temperature"] == 8.0


class TestParticleGibbs:
    N = 8
    BOXES = staticmethod(lambda path: path[-1] % 3 == 0 or len(path) >= 4)

    def run(self, stepper=None, **settings):
        return search(particle_gibbs, self.N, stepper or Stepper(boxes=self.BOXES), **settings)

    @pytest.mark.parametrize(("n", "sizes"), [
        (1, [1]), (2, [2]), (3, [3]), (4, [2, 2]), (5, [3, 2]), (6, [3, 3]), (8, [4, 4]),
        (16, [8, 8])])
    def test_the_budget_is_split_into_sweeps_of_particles(self, n, sizes):
        assert GIBBS_SWEEPS == 2
        assert gibbs_sweep_sizes(n) == sizes and sum(sizes) == n

    def test_each_sweep_holds_its_particles_the_reference_among_them(self):
        result, policy, _ = self.run()
        first, second = result.details.sweeps
        assert all(len(r.nodes) == 4 for r in first.rounds + second.rounds)
        assert all(r.ancestors is None or len(r.ancestors) == 4 for r in first.rounds)
        # after the first sweep, three free particles are drawn; the reference stays
        assert all(r.ancestors is None or len(r.ancestors) == 3 for r in second.rounds)
        roots = [c for c in policy.calls if c.prefixes == (PROMPT,)]
        assert [c.n for c in roots] == [4, 3]
        assert len(result.candidates) == self.N
        assert [c.node_id for c in result.candidates] == list(first.final + second.final)
        assert (result.method, result.n) == ("pgibbs", self.N)

    @pytest.mark.parametrize("temperature", [1.0, 3.0])
    def test_the_reference_keeps_its_path_and_weighs_in_at_each_depth(self, temperature):
        result, policy, _ = self.run(particle_temperature=temperature)
        tree = result.tree
        first, second = result.details.sweeps
        reference_leaf = tree.nodes[first.final[first.reference]]
        path = tree.path(reference_leaf)
        assert second.final[-1] == reference_leaf.id  # it ends the second sweep too
        for depth, r in enumerate(second.rounds, start=1):
            node = path[min(depth, len(path)) - 1]
            assert r.nodes[-1] == node.id
            assert r.weights == tuple(resampling_weights([tree.nodes[i].score for i in r.nodes],
                                                         temperature))
        # its steps are not generated again: the second sweep's new nodes are its own samples
        second_calls = [c for c in policy.calls if c.seed >= 40]
        assert sum(c.samples for c in second_calls) == sum(x.group == 1 for x in tree.nodes)
        assert all(x.group == 0 for x in path)

    @pytest.mark.parametrize("temperature", [1.0, 3.0])
    def test_the_reference_is_drawn_by_the_final_weights(self, temperature):
        result, _, _ = self.run(particle_temperature=temperature)
        first, _ = result.details.sweeps
        assert result.details.temperature == temperature
        final_weights = resampling_weights([result.tree.nodes[i].score for i in first.final],
                                           temperature)
        # replay the search's generator: every draw of the sweep, then the reference's
        rng = resampling_rng(make_ctx(ScriptedPolicy(Stepper())))
        for r in first.rounds:
            if r.ancestors is not None:
                assert tuple(draw_ancestors(rng, r.weights, 4)) == r.ancestors
        assert draw_ancestors(rng, final_weights, 1) == [first.reference]

    def test_a_free_particle_drawing_the_reference_continues_from_its_node(self):
        found = False
        for seed in range(20):
            result, policy, _ = self.run(seed=seed)
            tree = result.tree
            _, second = result.details.sweeps
            for current, following in zip(second.rounds, second.rounds[1:], strict=False):
                reference_node = tree.nodes[current.nodes[-1]]
                for j, a in enumerate(current.ancestors):
                    if a == len(current.nodes) - 1 and reference_node.status not in DONE:
                        child = tree.nodes[following.nodes[j]]
                        assert child.parent == reference_node.id
                        assert (reference_node.group, child.group) == (0, 1)
                        found = True
        assert found

    def test_sweeps_sample_with_seeds_of_their_own(self):
        result, policy, _ = self.run(seed=7, max_depth=40)
        group_of_depth = {}
        for call in policy.calls:
            depth = call.prefixes[0][len(PROMPT):].count(DELIM) + 1
            sweep = 0 if call.seed < 7 + 40 else 1
            assert call.seed == 7 + 40 * sweep + depth - 1
            group_of_depth.setdefault(sweep, set()).add(depth)
        assert set(group_of_depth) == {0, 1}

    def test_every_call_is_charged_to_the_ledger(self):
        result, policy, scorer = self.run()
        check_ledger(result, policy, scorer)

    def test_same_seed_same_search(self):
        one, _, _ = self.run(seed=11)
        two, _, _ = self.run(seed=11)
        assert same_search(one, two)

    def test_small_budgets_are_one_particle_filter(self):
        for n in (1, 2, 3):
            result, _, _ = search(particle_gibbs, n, Stepper(answer_depth=2))
            [sweep] = result.details.sweeps
            assert sweep.reference is None and len(result.candidates) == n


# --------------------------------------------------------------------------------------------
# As the registry lists them
# --------------------------------------------------------------------------------------------

SPECS = [
    MethodSpec("pf", particle_filtering, True, False, False,
               "particle filtering: N particles step by step, resampled by their PRM weights"),
    MethodSpec("pgibbs", particle_gibbs, True, False, False,
               "particle Gibbs: particle-filter sweeps, each keeping a reference particle "
               "from the one before"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
class TestAsRegistered:
    def dispatch(self, spec, n, width):
        policy, scorer = ScriptedPolicy(Stepper(answer_depth=2)), ScriptedScorer()
        ctx = make_ctx(policy, scorer, width=width, temperature=0.7)
        spec.check_budget(n, width)
        return asyncio.run(spec.run(ctx, n)), policy, scorer

    def test_n_candidates_by_its_name_with_the_scorer(self, spec):
        result, _, scorer = self.dispatch(spec, 4, 2)
        assert (result.method, len(result.candidates)) == (spec.name, 4)
        assert all(c.answer == "7" for c in result.candidates)
        assert bool(scorer.calls) == spec.uses_scorer

    def test_any_budget_runs_whatever_the_width(self, spec):
        result, _, _ = self.dispatch(spec, 6, 4)
        assert len(result.candidates) == 6

    def test_not_answered_from_a_pool(self, spec):
        _, policy, _ = self.dispatch(spec, 4, 2)
        assert not spec.pooled and len(policy.calls) > 1
        assert any(DELIM in c.stop for c in policy.calls)

    def test_the_record_holds_the_particles(self, spec):
        result, _, _ = self.dispatch(spec, 4, 2)
        record = result.details.to_dict()
        assert result.details.record_key == "particles"
        assert record["temperature"] == SearchSettings().particle_temperature
        for sweep in record["sweeps"]:
            assert set(sweep) == {"rounds", "final", "reference"}
            for r in sweep["rounds"]:
                assert set(r) == {"nodes", "weights", "ancestors"}
