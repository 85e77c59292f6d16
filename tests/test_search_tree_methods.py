"""REBASE and lookahead search against the scripted policy and scorer: the children each node
is allotted, the rollouts that rank the beams, the tree, the ledger. No model runs here."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fakes import (
    DELIM,
    END,
    PROMPT,
    ScriptedPolicy,
    ScriptedScorer,
    Stepper,
    at_depth,
    hashed_score,
    make_ctx,
    path_of,
    prefix_of,
    requested,
    run,
    step_text,
)
from fakes import assert_ledger_charges_every_call as charges_every_call
from ttscale.errors import ConfigError
from ttscale.search import lookahead as lookahead_module
from ttscale.search.beam_search import beam_search
from ttscale.search.lookahead import LOOKAHEAD_STEPS, lookahead_search
from ttscale.search.methods import MethodSpec
from ttscale.search.rebase import SOFTMAX_TEMPERATURE, allot, rebase
from ttscale.search.tree import Node, Tree


def table(scores: dict, default=hashed_score):
    return lambda path: scores.get(path, default(path))


def paths(nodes) -> list[tuple[int, ...]]:
    return [path_of(n.step.text) for n in nodes]


def assert_ledger_charges_every_call(ledger, policy: ScriptedPolicy,
                                     scorer: ScriptedScorer) -> None:
    charges_every_call(ledger, policy, scorer)
    assert scorer.calls  # these searches are guided by the scorer


def snapshot(result) -> tuple:
    return ([(c.node_id, tuple(s.text for s in c.steps), c.step_scores, c.finish_reason)
             for c in result.candidates], result.tree.to_dict(),
            result.details.to_dict() if result.details else None)


# --------------------------------------------------------------------------------------------
# REBASE
# --------------------------------------------------------------------------------------------


class TestAllot:
    """The reference's rounding: best first, each node takes ceil(b * e_i / s) of the budget b
    left, s the sum of e_j = exp(R_j / T) over the nodes not yet served."""

    def test_reference_temperature(self):
        assert SOFTMAX_TEMPERATURE == 0.2

    def test_sequential_ceiling_of_the_softmax(self):
        # e = (1, e^-1, e^-2): 8 * 1 / 1.5032 = 5.32 -> 6; 2 * 0.3679 / 0.5032 = 1.46 -> 2;
        # nothing left for the third (plain rounding of 8 * softmax would give 5, 2, 1)
        assert allot([0.9, 0.7, 0.5], 8) == [6, 2, 0]
        # the counts follow the nodes, whatever their order
        assert allot([0.5, 0.9, 0.7], 8) == [0, 6, 2]
        # 4 * 1 / 1.5032 = 2.66 -> 3; 1 * 0.3679 / 0.5032 = 0.73 -> 1
        assert allot([0.9, 0.7, 0.5], 4) == [3, 1, 0]

    def test_ties_go_to_the_earlier_node(self):
        # 4 / 3 -> 2; 2 / 2 -> 1; 1 / 1 -> 1
        assert allot([0.4, 0.4, 0.4], 4) == [2, 1, 1]
        assert allot([0.5] * 4, 8) == [2, 2, 2, 2]

    def test_temperature_sharpens(self):
        # T = 0.05: e = (1, e^-4, e^-8): 8 * 0.9817 = 7.85 -> 8
        assert allot([0.9, 0.7, 0.5], 8, temperature=0.05) == [8, 0, 0]
        # T = 1000: e ~ (1, 0.9998, 0.9996), 9 / 2.9994 = 3.0006 -> 4; the ceiling favours
        # the best even where the softmax is nearly flat: 5 * 0.9998 / 1.9994 = 2.5002 -> 3
        assert allot([0.9, 0.7, 0.5], 9, temperature=1000.0) == [4, 3, 2]

    @pytest.mark.parametrize("budget", [1, 2, 5, 13, 64])
    def test_the_budget_is_allotted_exactly(self, budget):
        scores = [hashed_score((j,)) for j in range(7)]
        counts = allot(scores, budget)
        assert sum(counts) == budget and min(counts) >= 0
        # a better score never gets fewer children
        ranked = sorted(range(7), key=lambda i: -scores[i])
        assert [counts[i] for i in ranked] == sorted(counts, reverse=True)

    def test_a_lone_node_takes_all_and_nothing_is_allotted_without_budget(self):
        assert allot([0.1], 5) == [5]
        assert allot([0.9, 0.1], 0) == [0, 0]
        assert allot([], 4) == []


class TestRebase:
    N = 8
    # depth 1: samples 6 and 7 end at once; 0-5 score 0.9 ... 0.4
    # depth 2: the first child of every node ends; (0, 1) and (0, 2) tie at 0.6
    SCORES = {(0,): 0.9, (1,): 0.8, (2,): 0.7, (3,): 0.6, (4,): 0.5, (5,): 0.4,
              (6,): 0.8, (7,): 0.8, (0, 1): 0.6, (0, 2): 0.6, (1, 1): 0.2}

    @staticmethod
    def boxes(path):
        return (len(path) == 1 and path[0] >= 6) or (len(path) == 2 and path[1] == 0) \
            or len(path) >= 3

    def search(self, stepper=None, n=None, **settings):
        policy = ScriptedPolicy(stepper or Stepper(boxes=self.boxes, score=table(self.SCORES)))
        scorer = ScriptedScorer()
        ctx = make_ctx(policy, scorer, **settings)
        return run(rebase(ctx, n or self.N)), policy, scorer

    def test_children_follow_the_softmax_of_the_frontier_as_the_budget_shrinks(self):
        result, policy, _ = self.search()
        rounds = result.details.to_dict()["rounds"]
        tree = result.tree
        # worked by hand, T = 0.2:
        # round 1: the root alone takes all 8; 2 of them end: 6 left
        # round 2: e = exp(-k/2), k = 0..5, sum 2.4149: 6/2.4149 = 2.48 -> 3;
        #   3 * 0.6065/1.4149 = 1.29 -> 2; 1 * 0.3679/0.8084 = 0.46 -> 1; then none.
        #   (with the 8 of an unshrunk budget it would be 4, 2, 1, 1.) 3 of the 6 end: 3 left
        # round 3: e = (1, 1, e^-2): 3/2.1353 = 1.40 -> 2; 1 * 1/1.1353 = 0.88 -> 1; none
        assert [(r["depth"], r["budget"], r["allotment"]) for r in rounds] == [
            (1, 8, [8]), (2, 6, [3, 2, 1, 0, 0, 0]), (3, 3, [2, 1, 0])]
        assert [r["scores"] for r in rounds] == [
            [None], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.6, 0.6, 0.2]]
        assert [paths(tree.nodes[i] for i in r["nodes"]) for r in rounds[1:]] == [
            [(j,) for j in range(6)], [(0, 1), (0, 2), (1, 1)]]
        # each node was asked for exactly its allotment, continuing its own prefix
        for r in rounds:
            wanted = {prefix_of(tree, tree.nodes[i]): count
                      for i, count in zip(r["nodes"], r["allotment"], strict=True) if count}
            depth_calls = [c for c in policy.calls
                           if c.prefixes[0].count(DELIM) == r["depth"] - 1]
            assert requested(depth_calls) == Counter(wanted)
            for i, count in zip(r["nodes"], r["allotment"], strict=True):
                assert len(tree.nodes[i].children) == count

    def test_tree_statuses(self):
        result, policy, _ = self.search()
        tree = result.tree
        status = {path_of(n.step.text): n.status for n in tree.nodes[1:]}
        assert status == {
            (0,): "kept", (1,): "kept", (2,): "kept", (3,): "pruned", (4,): "pruned",
            (5,): "pruned", (6,): "finished", (7,): "finished",
            (0, 0): "finished", (0, 1): "kept", (0, 2): "kept", (1, 0): "finished",
            (1, 1): "pruned", (2, 0): "finished",
            (0, 1, 0): "finished", (0, 1, 1): "finished", (0, 2, 0): "finished"}
        # every generated step is in the tree, once
        assert len(tree.nodes) - 1 == sum(c.samples for c in policy.calls) == len(status)
        for node in tree.nodes[1:]:
            assert node.score == self.SCORES.get(path_of(node.step.text),
                                                 hashed_score(path_of(node.step.text)))

    def test_candidates_are_the_finished_solutions(self):
        result, _, scorer = self.search()
        assert sorted(tuple(path_of(c.steps[-1].text)) for c in result.candidates) == sorted([
            (6,), (7,), (0, 0), (1, 0), (2, 0), (0, 1, 0), (0, 1, 1), (0, 2, 0)])
        assert len(result.candidates) == self.N
        for candidate in result.candidates:
            assert candidate.answer == "7" and candidate.finish_reason == "stop"
            assert candidate.step_scores == tuple(
                table(self.SCORES)(path_of(s.text)) for s in candidate.steps)
        assert (result.method, result.n, result.width) == ("rebase", self.N, None)
        assert len(scorer.calls) == 3

    @pytest.mark.parametrize("boxes", [
        lambda path: len(path) >= 3,
        lambda path: path[-1] == 0 or len(path) >= 10,
        lambda path: path[-1] % 3 == 1 or len(path) >= 5,
        lambda path: (len(path) == 1 and path[0] < 6) or len(path) >= 3,
    ])
    @pytest.mark.parametrize("n", [1, 5, 8])
    def test_never_more_than_n_whole_solutions(self, boxes, n):
        result, policy, _ = self.search(Stepper(boxes=boxes), n=n)
        tree = result.tree
        ended = [x for x in tree.nodes if x.status in ("finished", "truncated")]
        assert len(ended) == n and len(result.candidates) == n
        assert not [x for x in tree.nodes if x.status == "open"]
        spent = 0
        for r in result.details.to_dict()["rounds"]:
            assert r["budget"] == n - spent
            assert sum(r["allotment"]) == r["budget"]
            spent += sum(x.status == "finished" for x in at_depth(tree, r["depth"]))
        assert spent == n
        assert sum(c.samples for c in policy.calls) == len(tree.nodes) - 1

    def test_the_last_round_writes_each_path_to_its_end(self):
        result, policy, _ = self.search(Stepper(answer_depth=5), max_depth=2,
                                        max_step_tokens=50, max_solution_tokens=400)
        last = [c for c in policy.calls if c.prefixes[0].count(DELIM) == 1]
        assert {(c.stop, c.max_tokens) for c in last} == {((END,), 400)}
        assert {(c.stop, c.max_tokens) for c in policy.calls if c not in last} == {
            ((DELIM, END), 50)}
        leaves = at_depth(result.tree, 2)
        assert len(leaves) == self.N and {x.status for x in leaves} == {"finished"}
        assert all(x.step.text.count("Step ") == 4 for x in leaves)
        assert len(result.candidates) == self.N

    def test_paths_cut_by_tokens_are_spent_but_no_candidates(self):
        # as in the reference: a path over the token limit counts against the budget and is
        # not an answer
        result, _, _ = self.search(Stepper(answer_depth=5), max_depth=2, max_solution_tokens=6)
        leaves = at_depth(result.tree, 2)
        assert len(leaves) == self.N
        assert {(x.status, x.finish_reason) for x in leaves} == {("truncated", "length")}
        assert result.candidates == ()

    def test_ledger_charges_every_call(self):
        result, policy, scorer = self.search()
        assert_ledger_charges_every_call(result.ledger, policy, scorer)

    def test_same_seed_same_search(self):
        first, _, _ = self.search(Stepper(boxes=lambda p: p[-1] % 3 == 1 or len(p) >= 5),
                                  seed=3)
        again, _, _ = self.search(Stepper(boxes=lambda p: p[-1] % 3 == 1 or len(p) >= 5),
                                  seed=3)
        assert snapshot(first) == snapshot(again)
        json.dumps(first.details.to_dict())  # the record stores it as JSON

    def test_details_are_recorded_under_rebase(self):
        result, _, _ = self.search()
        assert result.details.record_key == "rebase"
        assert result.details.to_dict()["softmax_temperature"] == SOFTMAX_TEMPERATURE

    def test_first_round_takes_reused_samples(self):
        # a shared pool's (or the planner's probe's) solutions are the root's first samples
        from ttscale.search.best_of_n import sample_solutions

        stepper = Stepper(answer_depth=2)
        pool = run(sample_solutions(make_ctx(ScriptedPolicy(stepper)), 3))
        policy = ScriptedPolicy(stepper)
        ctx = make_ctx(policy, ScriptedScorer())
        ctx.reuse = tuple(pool)
        run(rebase(ctx, 8))
        first = policy.calls[0]
        assert (first.prefixes, first.n, first.first_sample) == ((PROMPT,), 5, 3)


# --------------------------------------------------------------------------------------------
# Lookahead search
# --------------------------------------------------------------------------------------------

GREEDY = 9  # the step index written at temperature 0: rollout steps are told apart from samples


class MarkingPolicy(ScriptedPolicy):
    """A scripted policy whose ``Stepper`` writes step index ``GREEDY`` at temperature 0, so a
    rollout's step (j, 9) differs from the sampled expansion (j, 0) of the same node."""

    def __init__(self, key=lambda depth, j: j, **stepper) -> None:
        self.greedy = False
        super().__init__(Stepper(key=lambda depth, j: GREEDY if self.greedy else key(depth, j),
                                 **stepper))

    async def extend(self, prefixes, n, stop, max_tokens, temperature, top_p, seed,
                     first_sample=0):
        self.greedy = temperature == 0.0
        return await super().extend(prefixes, n, stop, max_tokens, temperature, top_p, seed,
                                    first_sample)


def is_rollout(node: Node) -> bool:
    return path_of(node.step.text)[-1] == GREEDY


def rollout_chain(tree: Tree, node: Node) -> list[Node]:
    """The greedy steps written after ``node``, in order."""
    chain = []
    while nxt := [tree.nodes[c] for c in node.children if is_rollout(tree.nodes[c])]:
        [node] = nxt
        chain.append(node)
    return chain


def beam_nodes(tree: Tree, depth: int) -> list[Node]:
    return [x for x in at_depth(tree, depth) if not is_rollout(x)]


def rollout_calls(policy):
    return [c for c in policy.calls if c.temperature == 0.0]


class TestLookahead:
    N, M = 4, 2
    # a first step's own score says keep 0 and 1; its greedy continuation's says keep 2 and 3
    SCORES = {(0,): 0.9, (1,): 0.8, (2,): 0.3, (3,): 0.2,
              (0, GREEDY): 0.1, (1, GREEDY): 0.15, (2, GREEDY): 0.9, (3, GREEDY): 0.7}

    def search(self, method=lookahead_search, n=None, stepper=None, **settings):
        policy = MarkingPolicy(**(stepper or {"answer_depth": 3, "score": table(self.SCORES)}))
        scorer = ScriptedScorer()
        settings.setdefault("width", self.M)
        ctx = make_ctx(policy, scorer, **settings)
        return run(method(ctx, n or self.N)), policy, scorer

    @staticmethod
    def kept_first_steps(result):
        return {path_of(x.step.text) for x in beam_nodes(result.tree, 1) if x.status == "kept"}

    def test_default_lookahead_is_search_and_learns(self):
        assert LOOKAHEAD_STEPS == 1

    def test_the_rollouts_score_decides_which_beams_survive(self):
        result, _, scorer = self.search()
        assert self.kept_first_steps(result) == {(2,), (3,)}
        # beam search, ranking each step by its own score, keeps the other two
        plain, _, _ = self.search(method=beam_search)
        assert self.kept_first_steps(plain) == {(0,), (1,)}
        # the first round's scorer call read each first step with its greedy step
        assert scorer.calls[0].solutions == [
            [step_text((j,), self.SCORES[(j,)]), step_text((j, GREEDY), self.SCORES[(j, GREEDY)])]
            for j in range(self.N)]

    def test_the_rollout_is_ranked_by_the_step_aggregation(self):
        # min over the path and its rollout: 0.1, 0.15, 0.3, 0.2 -> keep 2 and 3
        result, _, _ = self.search(step_aggregation="min")
        assert self.kept_first_steps(result) == {(2,), (3,)}
        # mean: 0.5, 0.475, 0.6, 0.45 -> keep 2 and 0
        result, _, _ = self.search(step_aggregation="mean")
        assert self.kept_first_steps(result) == {(2,), (0,)}

    def test_rollouts_are_greedy_k_steps_and_rank_every_round(self, monkeypatch):
        k = 3
        monkeypatch.setattr(lookahead_module, "LOOKAHEAD_STEPS", k)
        result, policy, scorer = self.search(stepper={"answer_depth": 6}, max_step_tokens=40)
        tree = result.tree
        assert {(c.n, c.stop, c.max_tokens, c.temperature) for c in rollout_calls(policy)} == {
            (1, (DELIM, END), 40, 0.0)}
        for depth in range(1, 6):
            beams = beam_nodes(tree, depth)
            assert len(beams) == self.N and {x.status for x in beams} <= {"kept", "pruned"}
            ranking = {}
            for node in beams:
                chain = rollout_chain(tree, node)
                # k steps, or fewer where the rollout wrote the answer (at depth 6) and ended
                path, length = path_of(node.step.text), min(k, 6 - depth)
                assert paths(chain) == [(*path, *[GREEDY] * i) for i in range(1, 1 + length)]
                assert ("\\boxed" in chain[-1].step.text) == (depth + k >= 6)
                assert {x.status for x in chain} == {"pruned"}
                assert [x.score for x in chain] == [hashed_score(p) for p in paths(chain)]
                ranking[node.id] = chain[-1].score  # "last": the score where the rollout ends
            kept = {x.id for x in beams if x.status == "kept"}
            assert kept == set(sorted(ranking, key=lambda i: (-ranking[i], i))[: self.N // self.M])
            # the scorer read each beam's path with its rollout
            assert sorted(len(s) for s in scorer.calls[depth - 1].solutions) == [
                depth + min(k, 6 - depth)] * self.N
        assert {x.status for x in beam_nodes(tree, 6)} == {"finished"}
        assert rollout_chain(tree, beam_nodes(tree, 6)[0]) == []
        # the candidates hold no rollout step
        for candidate in result.candidates:
            chain = tree.path(tree.nodes[candidate.node_id])
            assert not any(is_rollout(x) for x in chain)
            assert candidate.step_scores == tuple(x.score for x in chain)
            assert candidate.step_scores == tuple(hashed_score(p) for p in paths(chain))
        assert len(result.candidates) == self.N
        assert (result.method, result.n, result.width) == ("lookahead", self.N, self.M)

    def test_a_rollout_that_ends_early_is_scored_where_it_ends(self, monkeypatch):
        monkeypatch.setattr(lookahead_module, "LOOKAHEAD_STEPS", 3)
        # (j, 9) writes the answer: every first-round rollout stops after one step
        result, policy, scorer = self.search(stepper={
            "boxes": lambda p: p[-1] == GREEDY or len(p) >= 4, "score": table(self.SCORES)})
        # no rollout went on from a rollout step: each ended at its first
        assert rollout_calls(policy) and not any(
            path_of(prefix)[-1] == GREEDY for c in rollout_calls(policy) for prefix in c.prefixes)
        assert [len(s) for s in scorer.calls[0].solutions] == [2] * self.N
        assert self.kept_first_steps(result) == {(2,), (3,)}
        for node in beam_nodes(result.tree, 1):
            [end] = rollout_chain(result.tree, node)
            assert "\\boxed" in end.step.text and end.status == "pruned"

    def test_the_last_round_looks_no_further(self):
        result, policy, _ = self.search(stepper={"answer_depth": 5}, max_depth=2)
        assert [(c.temperature, c.stop) for c in policy.calls] == [
            (0.7, (DELIM, END)), (0.0, (DELIM, END)), (0.7, (END,))]
        assert {x.status for x in beam_nodes(result.tree, 2)} == {"finished"}
        assert len(result.candidates) == self.N

    def test_identical_candidates_are_rolled_out_once(self):
        # samples 2k and 2k+1 write the same first step
        result, policy, _ = self.search(stepper={
            "answer_depth": 3, "key": lambda depth, j: j // 2 if depth == 1 else j})
        first = rollout_calls(policy)[0]
        assert len(first.prefixes) == len(set(first.prefixes)) == 2
        assert len(result.tree.nodes) - 1 == sum(c.samples for c in policy.calls)

    def test_tree_holds_every_step_generated(self):
        result, policy, _ = self.search(stepper={"answer_depth": 4})
        tree = result.tree
        assert len(tree.nodes) - 1 == sum(c.samples for c in policy.calls)
        greedy = Counter(c.text for call in rollout_calls(policy)
                         for conts in call.replies for c in conts)
        rollouts = [x for x in tree.nodes[1:] if is_rollout(x)]
        assert Counter(x.step.text for x in rollouts) == greedy
        assert {x.status for x in rollouts} == {"pruned"}
        assert all(x.score is not None for x in tree.nodes[1:])
        for depth in (1, 2, 3):
            beams = beam_nodes(tree, depth)
            assert len(beams) == self.N
            assert sum(x.status == "kept" for x in beams) == self.N // self.M
            assert {x.status for x in beams} == {"kept", "pruned"}
            for node in beams:  # a kept node's children: its M samples and its own rollout
                assert len(node.children) == (self.M + 1 if node.status == "kept" else 1)
        assert {x.status for x in beam_nodes(tree, 4)} == {"finished"}

    def test_rollout_tokens_are_on_the_ledger(self):
        result, policy, scorer = self.search(stepper={"answer_depth": 4})
        assert_ledger_charges_every_call(result.ledger, policy, scorer)
        rolled = sum(c.generated_tokens for call in rollout_calls(policy)
                     for conts in call.replies for c in conts)
        in_tree = sum(x.step.generated_tokens for x in result.tree.nodes[1:] if is_rollout(x))
        assert rolled == in_tree > 0
        assert result.ledger.policy.generated > sum(
            x.step.generated_tokens for x in result.tree.nodes[1:] if not is_rollout(x))

    def test_budget_must_be_a_multiple_of_the_width(self):
        with pytest.raises(ConfigError, match="N=6"):
            self.search(n=6, width=4)

    def test_same_seed_same_search(self):
        first, _, _ = self.search(stepper={"answer_depth": 4}, seed=5)
        again, _, _ = self.search(stepper={"answer_depth": 4}, seed=5)
        assert snapshot(first) == snapshot(again)


# --------------------------------------------------------------------------------------------
# Their registry entries
# --------------------------------------------------------------------------------------------

SPECS = {
    "rebase": MethodSpec("rebase", rebase, True, False, False,
                         "REBASE: children allotted by a softmax of the frontier's scores"),
    "lookahead": MethodSpec("lookahead", lookahead_search, True, True, False,
                            "beam search ranking each step by a greedy rollout's score"),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_width_is_checked_exactly_where_the_entry_says(name):
    spec = SPECS[name]
    policy = ScriptedPolicy(Stepper(answer_depth=2))
    ctx = make_ctx(policy, ScriptedScorer(), width=4)
    if spec.uses_width:
        with pytest.raises(ConfigError, match="N=6"):
            spec.check_budget(6, 4)
        with pytest.raises(ConfigError, match="N=6"):
            run(spec.run(ctx, 6))
    else:
        spec.check_budget(6, 4)
        result = run(spec.run(ctx, 6))
        assert len(result.candidates) == 6 and {c.answer for c in result.candidates} == {"7"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_scorer_is_needed(name):
    ctx = make_ctx(ScriptedPolicy(Stepper(answer_depth=2)), None, width=2)
    with pytest.raises(ConfigError, match="scorer"):
        run(SPECS[name].run(ctx, 4))
