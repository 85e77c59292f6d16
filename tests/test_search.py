"""Search methods against a scripted policy and scorer: the calls they make and the tree they
grow. No model runs here."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from fakes import (
    DELIM,
    END,
    PROBLEM,
    PROMPT,
    ExtendCall,
    ScriptedPolicy,
    ScriptedScorer,
    Stepper,
    assert_ledger_charges_every_call,
    at_depth,
    hashed_score,
    make_ctx,
    marked_score,
    path_of,
    run,
    step_text,
    token_logprob,
)
from ttscale.compute import TokenCount
from ttscale.engines.base import Continuation
from ttscale.errors import ConfigError
from ttscale.search import METHODS, get_method
from ttscale.search.beam_search import beam_search, check_budget
from ttscale.search.best_of_n import best_of_n, greedy, majority_vote, sample_solutions
from ttscale.search.dvts import dvts
from ttscale.search.steps_from_text import single_step, split_continuation
from ttscale.search.tree import Node, Tree
from ttscale.steps import Step


def prefix_depth(prefix: str) -> int:
    assert prefix.startswith(PROMPT)
    return prefix[len(PROMPT):].count(DELIM)


def rounds(calls: list[ExtendCall]) -> dict[int, list[ExtendCall]]:
    """Calls by search round (round r continues prefixes holding r - 1 steps)."""
    by_round: dict[int, list[ExtendCall]] = defaultdict(list)
    for call in calls:
        depths = {prefix_depth(p) for p in call.prefixes}
        assert len(depths) == 1, "one engine call mixes prefixes of different depths"
        by_round[depths.pop() + 1].append(call)
    return dict(sorted(by_round.items()))


def node_by_path(tree: Tree, path: tuple[int, ...]) -> Node:
    [node] = [n for n in tree.nodes[1:] if path_of(n.step.text) == path]
    return node


def ancestors(tree: Tree, node: Node) -> list[Node]:
    chain = []
    while node.parent is not None:
        node = tree.nodes[node.parent]
        chain.append(node)
    return chain


def expected_prefix(tree: Tree, node: Node) -> str:
    return PROMPT + DELIM.join(n.step.text for n in tree.path(node)) + DELIM


def rank_score(n: int):
    """Depth-1 scores making the ranking of the N first steps known: sample j scores
    ((5j mod N) + 1) / (N + 1); deeper steps score pseudo-randomly."""
    def score(path):
        if len(path) == 1:
            return round(((5 * path[0]) % n + 1) / (n + 1), 3)
        return hashed_score(path)
    return score


# worked by hand from rank_score: the N/M samples with the highest (5j mod N)
TOP_FIRST_STEPS = {(8, 2): {3, 6, 1, 4}, (16, 4): {3, 6, 9, 12}}


def test_solve_searches_with_the_policy_and_scorer_it_is_given():
    # any object with the policy protocol is an engine to ``ttscale.solve``: no model loads
    from ttscale import solve
    from ttscale.prompts import PromptFormat

    prompt = PromptFormat()
    policy = ScriptedPolicy(Stepper(prompt.render(PROBLEM), answer_depth=2, delimiter="\n"))
    result = solve(PROBLEM, method="bon", n=4, engine=policy, scorer=ScriptedScorer(),
                   prompt=prompt)
    [call] = policy.calls
    assert call.prefixes == (prompt.render(PROBLEM),) and call.n == 4
    assert (result.answer, result.method, result.candidates) == ("7", "bon", 4)
    assert result.score == marked_score(result.steps[-1])  # the given scorer's, aggregated "last"


# --------------------------------------------------------------------------------------------
# Best-of-N
# --------------------------------------------------------------------------------------------


class TestBestOfN:
    N = 8

    def search(self, stepper=None, scorer=True, **settings):
        policy = ScriptedPolicy(stepper or Stepper(answer_depth=3))
        scorer_obj = ScriptedScorer() if scorer else None
        ctx = make_ctx(policy, scorer_obj, **settings)
        return run(best_of_n(ctx, self.N)), policy, scorer_obj, ctx

    def test_one_call_with_n_at_temperature_and_solution_stops(self):
        _, policy, _, ctx = self.search(temperature=0.6, max_solution_tokens=500, seed=11)
        [call] = policy.calls
        assert call.prefixes == (PROMPT,)
        assert call.n == self.N
        assert call.temperature == 0.6
        assert call.stop == (END,)
        assert DELIM not in call.stop
        assert call.max_tokens == 500
        assert call.seed == 11

    def test_candidates_are_the_solutions_split_into_steps(self):
        result, policy, _, _ = self.search()
        [call] = policy.calls
        [continuations] = call.replies
        assert len(result.candidates) == self.N
        for j, (candidate, cont) in enumerate(zip(result.candidates, continuations,
                                                  strict=True)):
            texts = [s.text for s in candidate.steps]
            assert texts == cont.text.split(DELIM)
            assert texts == [step_text((j,), hashed_score((j,))),
                             step_text((j, 0), hashed_score((j, 0))),
                             step_text((j, 0, 0), hashed_score((j, 0, 0)), "7")]
            assert candidate.answer == "7"
            assert candidate.finish_reason == "stop"  # cut at the end stop

    def test_tree_holds_one_chain_per_solution(self):
        result, _, _, _ = self.search()
        tree = result.tree
        assert len(tree.root.children) == self.N
        assert len(tree.nodes) == 1 + 3 * self.N
        for candidate in result.candidates:
            leaf = tree.nodes[candidate.node_id]
            chain = tree.path(leaf)
            assert [n.step for n in chain] == list(candidate.steps)
            assert [n.status for n in chain] == ["kept", "kept", "finished"]
            assert leaf.finish_reason == "stop" and leaf.children == []

    def test_steps_after_the_first_boxed_step_are_dropped(self):
        text = ("A one [s=0.2]" + DELIM + "B two \\boxed{5} [s=0.9]" + DELIM + "C three [s=0.1]"
                + DELIM + "D four \\boxed{6}" + END + " junk")
        result, policy, scorer, _ = self.search(lambda prefix, j, stop: (text, "eos"))
        for candidate in result.candidates:
            assert [s.text for s in candidate.steps] == ["A one [s=0.2]",
                                                         "B two \\boxed{5} [s=0.9]"]
            assert candidate.answer == "5"
            assert candidate.generated_tokens == 3 + 4
            assert candidate.step_scores == (0.2, 0.9)
        # + the end-of-sequence token, which belongs to no step kept
        assert policy.continuations[0].generated_tokens == 3 + 4 + 3 + 3 + 1
        assert len(result.tree.nodes) == 1 + 2 * self.N
        assert scorer.calls[0].solutions[0] == ["A one [s=0.2]", "B two \\boxed{5} [s=0.9]"]

    def test_tokens_and_logprobs_are_divided_between_steps(self):
        result, policy, _, _ = self.search()
        for candidate, cont in zip(result.candidates, policy.continuations, strict=True):
            # the token that ended the solution has no text: the last step paid for it
            untexted = cont.generated_tokens - len(cont.token_offsets)
            assert untexted == 1
            pieces = cont.text.split(DELIM)
            start = 0
            for k, (step, piece) in enumerate(zip(candidate.steps, pieces, strict=True)):
                words = len(piece.split())
                last = k == len(pieces) - 1
                assert step.generated_tokens == words + (untexted if last else 0)
                assert step.token_logprobs == tuple(token_logprob(k)
                                                    for k in range(start, start + words))
                start += words
            assert start + untexted == cont.generated_tokens == candidate.generated_tokens

    def test_one_scorer_call_with_every_solution(self):
        result, _, scorer, _ = self.search()
        [call] = scorer.calls
        assert call.problem == PROBLEM
        assert call.solutions == [[s.text for s in c.steps] for c in result.candidates]
        assert len(call.solutions) == self.N
        for candidate in result.candidates:
            expected = tuple(marked_score(s.text) for s in candidate.steps)
            assert candidate.step_scores == expected
            assert len(set(expected)) == 3  # distinct, so a misaligned score would show
            chain = result.tree.path(result.tree.nodes[candidate.node_id])
            assert tuple(n.score for n in chain) == expected

    def test_without_scorer_candidates_are_unscored(self):
        result, _, _, _ = self.search(scorer=False)
        assert all(c.step_scores is None for c in result.candidates)

    def test_majority_vote_samples_the_same_and_never_scores(self):
        policy = ScriptedPolicy(Stepper(answer_depth=2))
        scorer = ScriptedScorer()
        result = run(majority_vote(make_ctx(policy, scorer), 4))
        [call] = policy.calls
        assert (call.n, call.stop) == (4, (END,))
        assert scorer.calls == []
        assert len(result.candidates) == 4
        assert all(c.step_scores is None for c in result.candidates)


# --------------------------------------------------------------------------------------------
# Beam search
# --------------------------------------------------------------------------------------------


class TestBeamSearch:
    def search(self, n, width, stepper=None, **settings):
        policy = ScriptedPolicy(stepper or Stepper(answer_depth=3))
        scorer = ScriptedScorer()
        ctx = make_ctx(policy, scorer, width=width, **settings)
        return run(beam_search(ctx, n)), policy, scorer

    @pytest.mark.parametrize(("n", "width"), [(8, 2), (16, 4)])
    def test_first_round_samples_the_root_n_times(self, n, width):
        _, policy, _ = self.search(n, width, max_step_tokens=77)
        first = policy.calls[0]
        assert first.prefixes == (PROMPT,)
        assert first.n == n
        assert first.stop == (DELIM, END)
        assert first.max_tokens == 77

    @pytest.mark.parametrize(("n", "width"), [(8, 2), (16, 4)])
    def test_keeps_exactly_the_n_over_m_best_first_steps(self, n, width):
        result, _, _ = self.search(n, width, Stepper(answer_depth=3, score=rank_score(n)))
        tree = result.tree
        first = at_depth(tree, 1)
        assert [path_of(node.step.text) for node in first] == [(j,) for j in range(n)]
        kept = {node.id for node in first if node.status == "kept"}
        pruned = {node.id for node in first if node.status == "pruned"}
        expected = {node_by_path(tree, (j,)).id for j in TOP_FIRST_STEPS[n, width]}
        assert len(expected) == n // width
        assert kept == expected
        assert pruned == {node.id for node in first} - expected
        assert all(tree.nodes[i].children == [] for i in pruned)

    @pytest.mark.parametrize(("n", "width"), [(8, 2), (16, 4)])
    def test_every_round_keeps_the_best_open_paths(self, n, width):
        result, _, _ = self.search(n, width, Stepper(answer_depth=4))
        tree = result.tree
        for depth in (1, 2, 3):
            nodes = at_depth(tree, depth)
            assert len(nodes) == n
            kept = [x for x in nodes if x.status == "kept"]
            pruned = [x for x in nodes if x.status == "pruned"]
            assert len(kept) == n // width and len(pruned) == n - n // width
            assert min(x.score for x in kept) >= max(x.score for x in pruned)
            for node in nodes:
                assert node.score == marked_score(node.step.text)

    @pytest.mark.parametrize(("n", "width"), [(8, 2), (16, 4)])
    def test_kept_nodes_are_expanded_m_times_from_their_prefix(self, n, width):
        result, policy, _ = self.search(n, width, Stepper(answer_depth=4))
        tree = result.tree
        by_round = rounds(policy.calls)
        assert list(by_round) == [1, 2, 3, 4]
        for r in (2, 3, 4):
            kept = [x for x in at_depth(tree, r - 1) if x.status == "kept"]
            requested = Counter()
            for call in by_round[r]:
                for prefix in call.prefixes:
                    requested[prefix] += call.n
            assert requested == Counter({expected_prefix(tree, x): width for x in kept})
            assert [(call.n, len(call.prefixes)) for call in by_round[r]] == [(width, n // width)]
            for node in kept:
                children = [tree.nodes[c] for c in node.children]
                parent = path_of(node.step.text)
                assert [path_of(c.step.text) for c in children] == [
                    (*parent, j) for j in range(width)]
        prefix = expected_prefix(tree, node_by_path(tree, (3,)))
        assert prefix == PROMPT + step_text((3,), hashed_score((3,))) + DELIM

    def test_score_aggregation_decides_what_is_kept(self):
        scores = {(0,): 0.9, (1,): 0.3, (2,): 0.2, (3,): 0.1,
                  (0, 0): 0.5, (0, 1): 0.4, (1, 0): 0.7, (1, 1): 0.6}

        def kept_second_steps(mode):
            stepper = Stepper(answer_depth=3, score=lambda p: scores.get(p, 0.5))
            result, _, _ = self.search(4, 2, stepper, step_aggregation=mode)
            return {path_of(x.step.text) for x in at_depth(result.tree, 2)
                    if x.status == "kept"}

        assert kept_second_steps("last") == {(1, 0), (1, 1)}
        assert kept_second_steps("min") == {(0, 0), (0, 1)}
        assert kept_second_steps("mean") == {(0, 0), (0, 1)}

    def test_boxed_paths_finish_and_leave_the_beam(self):
        stepper = Stepper(boxes=lambda path: path[-1] == 0 or len(path) >= 10)
        result, policy, _ = self.search(8, 2, stepper)
        tree = result.tree
        finished = [x for x in tree.nodes if x.status == "finished"]
        assert finished and all("\\boxed" in x.step.text for x in finished)
        assert all("\\boxed" not in x.step.text for x in tree.nodes[1:] if x not in finished)
        every_prefix = [p for call in policy.calls for p in call.prefixes]
        for node in finished:
            assert node.children == []
            assert not any(node.step.text in p for p in every_prefix)
        # round 1: 1 of 8 boxes; rounds 2 and 3: 4 of 8 box; 9 >= N after round 3
        assert [sum(x.status == "finished" for x in at_depth(tree, d)) for d in (1, 2, 3)] \
            == [1, 4, 4]
        assert len(policy.calls) == 3
        assert sorted(c.node_id for c in result.candidates) == sorted(x.id for x in finished)

    def test_a_boxed_step_finishes_its_path_even_if_the_text_goes_on(self):
        # the model writes on after its answer: the step is cut at the delimiter, not at END
        stepper = Stepper(answer_depth=2, tail=DELIM + "Let me check that again." + END)
        result, policy, _ = self.search(4, 2, stepper)
        leaves = at_depth(result.tree, 2)
        assert {x.finish_reason for x in leaves} == {"stop"}
        assert all(x.status == "finished" and x.children == [] for x in leaves)
        assert len(policy.calls) == 2
        assert all("check that again" not in x.step.text for x in result.tree.nodes[1:])

    def test_calls_follow_the_configured_seed(self):
        def seeds(seed):
            _, policy, _ = self.search(4, 2, Stepper(answer_depth=3), seed=seed)
            return [call.seed for call in policy.calls]

        assert [b - a for a, b in zip(seeds(0), seeds(1000), strict=True)] == [1000] * 3

    def test_stops_once_n_paths_finished(self):
        result, policy, _ = self.search(8, 2, Stepper(answer_depth=3), max_depth=40)
        assert len(policy.calls) == 3
        assert len(result.candidates) == 8
        assert {c.finish_reason for c in result.candidates} == {"stop"}
        assert all(c.answer == "7" and len(c.steps) == 3 for c in result.candidates)
        assert all(len(c.step_scores) == 3 for c in result.candidates)

    def test_every_round_generates_n_steps_even_with_fewer_beams(self):
        # 6 of the 8 first steps box: 2 beams are left and share the 8 samples
        stepper = Stepper(boxes=lambda path: (len(path) == 1 and path[0] < 6) or len(path) >= 3)
        result, policy, _ = self.search(8, 2, stepper)
        by_round = rounds(policy.calls)
        assert {r: sum(c.samples for c in calls) for r, calls in by_round.items()} == {
            1: 8, 2: 8, 3: 8}
        [second] = by_round[2]
        assert (len(second.prefixes), second.n) == (2, 4)
        assert len(result.candidates) == 6 + 8

    def test_last_round_at_max_depth_runs_to_the_end_of_the_solution(self):
        result, policy, _ = self.search(
            8, 2, Stepper(answer_depth=5), max_depth=3, max_step_tokens=50,
            max_solution_tokens=400)
        first, second, last = policy.calls
        assert (first.stop, first.max_tokens) == ((DELIM, END), 50)
        assert (second.stop, second.max_tokens) == ((DELIM, END), 50)
        assert (last.stop, last.max_tokens) == ((END,), 400)
        leaves = at_depth(result.tree, 3)
        assert len(leaves) == 8 and all(x.status == "finished" for x in leaves)
        for leaf in leaves:  # the rest of the solution, steps 3 to 5, as one last step
            assert leaf.step.text.count("Step ") == 3 and "\\boxed{7}" in leaf.step.text
        assert sorted(c.node_id for c in result.candidates) == sorted(x.id for x in leaves)

    def test_last_round_cut_by_max_tokens_is_truncated(self):
        result, policy, _ = self.search(8, 2, Stepper(answer_depth=5), max_depth=2,
                                        max_solution_tokens=6)
        assert len(policy.calls) == 2 and policy.calls[-1].max_tokens == 6
        leaves = at_depth(result.tree, 2)
        assert all(x.status == "truncated" and x.finish_reason == "length" for x in leaves)
        assert len(result.candidates) == 8
        assert {c.finish_reason for c in result.candidates} == {"length"}

    def test_depth_limit_of_one_is_a_single_whole_solution_round(self):
        result, policy, _ = self.search(4, 2, Stepper(answer_depth=3), max_depth=1)
        [call] = policy.calls
        assert (call.n, call.stop) == (4, (END,))
        assert len(result.candidates) == 4

    def test_identical_prefixes_are_merged_into_one_request(self):
        # at depth 1, samples 2k and 2k+1 write the same step
        scores = {(0,): 0.9, (1,): 0.8, (2,): 0.2, (3,): 0.1}
        stepper = Stepper(answer_depth=3, key=lambda depth, j: j // 2 if depth == 1 else j,
                          score=lambda p: scores.get(p, hashed_score(p)))
        result, policy, _ = self.search(8, 2, stepper)
        tree = result.tree
        kept = [x for x in at_depth(tree, 1) if x.status == "kept"]
        assert sorted(path_of(x.step.text) for x in kept) == [(0,), (0,), (1,), (1,)]
        second = policy.calls[1]
        assert prefix_depth(second.prefixes[0]) == 1
        assert len(second.prefixes) == len(set(second.prefixes)) == 2
        assert second.n == 4
        for call in policy.calls:
            assert len(call.prefixes) == len(set(call.prefixes))
        # the merged request's samples are shared out: twins get distinct children
        for parent in ((0,), (1,)):
            twins = [x for x in kept if path_of(x.step.text) == parent]
            children = [path_of(tree.nodes[c].step.text) for x in twins for c in x.children]
            assert [len(x.children) for x in twins] == [2, 2]
            assert children == [(*parent, j) for j in range(4)]

    def test_search_without_scorer_still_runs(self):
        policy = ScriptedPolicy(Stepper(answer_depth=2))
        result = run(beam_search(make_ctx(policy, None, width=2), 4))
        assert len(result.candidates) == 4
        assert all(c.step_scores == (0.5, 0.5) for c in result.candidates)


# --------------------------------------------------------------------------------------------
# DVTS
# --------------------------------------------------------------------------------------------


class TestDVTS:
    N, M = 8, 2

    def search(self, stepper=None, **settings):
        policy = ScriptedPolicy(stepper or Stepper(answer_depth=3))
        scorer = ScriptedScorer()
        ctx = make_ctx(policy, scorer, width=self.M, **settings)
        return run(dvts(ctx, self.N)), policy, scorer

    def test_n_over_m_subtrees_that_share_no_node(self):
        result, _, _ = self.search()
        tree = result.tree
        groups = defaultdict(set)
        for node in tree.nodes[1:]:
            groups[node.group].add(node.id)
            assert {a.group for a in ancestors(tree, node)[:-1]} <= {node.group}
            assert ancestors(tree, node)[-1] is tree.root
        assert sorted(groups) == list(range(self.N // self.M))
        ids = [i for members in groups.values() for i in members]
        assert len(ids) == len(set(ids)) == len(tree.nodes) - 1
        # subtree g starts from root samples g*M .. g*M + M - 1
        for g in groups:
            firsts = [x for x in at_depth(tree, 1) if x.group == g]
            assert [path_of(x.step.text) for x in firsts] == [
                (j,) for j in range(g * self.M, (g + 1) * self.M)]

    def test_each_subtree_keeps_one_path_expanded_m_times(self):
        result, _, _ = self.search(Stepper(answer_depth=4))
        tree = result.tree
        for g in range(self.N // self.M):
            for depth in (1, 2, 3):
                nodes = [x for x in at_depth(tree, depth) if x.group == g]
                assert len(nodes) == self.M
                [kept] = [x for x in nodes if x.status == "kept"]
                assert kept.score == max(x.score for x in nodes)
                assert len(kept.children) == self.M
                assert all(x.status == "pruned" for x in nodes if x is not kept)

    def test_subtrees_are_batched_into_one_call_per_round(self):
        result, policy, _ = self.search(Stepper(answer_depth=4))
        by_round = rounds(policy.calls)
        assert list(by_round) == [1, 2, 3, 4]
        [first] = by_round[1]
        assert (first.prefixes, first.n) == ((PROMPT,), self.N)
        for r in (2, 3, 4):
            [call] = by_round[r]
            assert (len(call.prefixes), call.n) == (self.N // self.M, self.M)
            kept = [x for x in at_depth(result.tree, r - 1) if x.status == "kept"]
            assert sorted(call.prefixes) == sorted(expected_prefix(result.tree, x) for x in kept)

    def test_candidates_are_pooled_from_every_subtree(self):
        result, _, _ = self.search()
        assert len(result.candidates) == self.N
        assert Counter(c.group for c in result.candidates) == {
            g: self.M for g in range(self.N // self.M)}
        for candidate in result.candidates:
            leaf = result.tree.nodes[candidate.node_id]
            assert leaf.status == "finished" and leaf.group == candidate.group
            assert candidate.step_scores == tuple(marked_score(s.text) for s in candidate.steps)
        assert (result.method, result.n, result.width) == ("dvts", self.N, self.M)

    def test_finished_subtrees_stop_while_the_others_go_on(self):
        stepper = Stepper(boxes=lambda path: path[-1] == 0 or len(path) >= 10)
        result, policy, _ = self.search(stepper)
        by_round = rounds(policy.calls)
        assert {r: sum(c.samples for c in calls) for r, calls in by_round.items()} == {
            1: 8, 2: 8, 3: 6}
        for calls in by_round.values():  # one call per distinct sample count
            assert len(calls) == len({c.n for c in calls})
        assert Counter(c.group for c in result.candidates) == {0: 2, 1: 2, 2: 2, 3: 2}
        last_groups = {x.group for x in at_depth(result.tree, 3)}
        assert last_groups == {1, 2, 3}


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------


class TestBudget:
    @pytest.mark.parametrize(("n", "width"), [(6, 4), (2, 4), (10, 4), (0, 2), (5, 2)])
    def test_rejects_n_that_is_not_a_multiple_of_m(self, n, width):
        with pytest.raises(ConfigError) as error:
            check_budget(n, width)
        assert f"N={n}" in str(error.value) and f"M={width}" in str(error.value)

    @pytest.mark.parametrize(("n", "width"), [(4, 4), (8, 4), (16, 4), (3, 1), (2, 2)])
    def test_accepts_multiples(self, n, width):
        check_budget(n, width)

    def test_rejects_a_width_below_one(self):
        with pytest.raises(ConfigError, match="M must be at least 1"):
            check_budget(4, 0)

    @pytest.mark.parametrize("method", [beam_search, dvts])
    def test_methods_check_before_any_call(self, method):
        policy = ScriptedPolicy(Stepper())
        with pytest.raises(ConfigError, match="N=6"):
            run(method(make_ctx(policy, ScriptedScorer(), width=4), 6))
        assert policy.calls == []

    @pytest.mark.parametrize("method", [beam_search, dvts])
    @pytest.mark.parametrize("boxes", [
        lambda path: len(path) >= 3,
        lambda path: path[-1] == 0 or len(path) >= 10,
        lambda path: path[-1] % 3 == 1 or len(path) >= 5,
        lambda path: (len(path) == 1 and path[0] < 6) or len(path) >= 3,
    ])
    def test_no_round_generates_more_than_n(self, method, boxes):
        n = 8
        policy = ScriptedPolicy(Stepper(boxes=boxes))
        result = run(method(make_ctx(policy, ScriptedScorer(), width=2), n))
        per_round = [sum(c.samples for c in calls) for calls in rounds(policy.calls).values()]
        assert per_round[0] == n
        assert all(0 < total <= n for total in per_round)
        assert len(result.tree.nodes) - 1 == sum(per_round)


# --------------------------------------------------------------------------------------------
# The method registry
# --------------------------------------------------------------------------------------------


def steps_of(candidates) -> list[tuple[str, ...]]:
    return [tuple(s.text for s in c.steps) for c in candidates]


class TestRegistry:
    """The runner, the server and the API act on each method's flags without running it (they
    check the width, load a scorer, answer from a shared pool): each flag must say what the
    method does when it runs."""

    @staticmethod
    def dispatch(name, n, width=2):
        policy, scorer = ScriptedPolicy(Stepper(answer_depth=2)), ScriptedScorer()
        ctx = make_ctx(policy, scorer, width=width, temperature=0.7)
        if METHODS[name].chooses:  # auto asks a planner: the prior rules for this policy
            from ttscale.planner import prior_plan
            from ttscale.planner.auto import PlanChooser

            info = policy.info
            ctx.chooser = PlanChooser(prior_plan(info.parameters, info.name, "scripted", width),
                                      "scripted")
        return run(get_method(name).run(ctx, n)), policy, scorer

    @pytest.mark.parametrize("name", sorted(METHODS))
    def test_every_method_is_dispatched_by_its_name(self, name):
        result, policy, _ = self.dispatch(name, 4)
        spec = METHODS[name]
        expected = spec.fixed_budget or 4
        if spec.stops_early:  # N is the most it reads; it says how many it drew
            assert 1 <= len(result.candidates) <= 4
            assert result.details.to_dict()["drawn"] == len(result.candidates)
        else:
            assert len(result.candidates) == expected
        assert result.method == name
        assert all(c.answer == "7" for c in result.candidates) and policy.calls

    @pytest.mark.parametrize("name", sorted(METHODS))
    def test_the_width_is_checked_exactly_where_the_registry_says(self, name):
        if METHODS[name].uses_width:
            with pytest.raises(ConfigError, match="N=6"):
                self.dispatch(name, 6, width=4)
        else:  # the runner lets N=6 with M=4 through: the method must run with it
            result, _, _ = self.dispatch(name, 6, width=4)
            assert result.candidates

    @pytest.mark.parametrize("name", sorted(METHODS))
    def test_the_scorer_is_called_exactly_where_the_registry_says(self, name):
        # a method registered without a scorer is given none: it must not need one
        _, _, scorer = self.dispatch(name, 4)
        assert bool(scorer.calls) == METHODS[name].uses_scorer

    @pytest.mark.parametrize("name", sorted(METHODS))
    def test_pooled_methods_answer_as_the_first_samples_of_a_larger_pool(self, name):
        # the runner does not run a pooled method: it answers from the first N samples of one
        # pool drawn for the largest budget, which must be what the method would have drawn
        if METHODS[name].chooses:  # draws as the method it picks does: the runner never pools it
            assert not METHODS[name].pooled
            return
        result, policy, _ = self.dispatch(name, 4)
        pool_policy = ScriptedPolicy(Stepper(answer_depth=2))
        pool = run(sample_solutions(make_ctx(pool_policy, temperature=0.7), 8))
        calls = [(c.prefixes, c.stop, c.temperature) for c in policy.calls]
        # whole solutions from the root, the pool's first ones (all N, or, for a method that
        # stops early, as many as it read, drawn in windows)
        read = len(result.candidates) if METHODS[name].stops_early else 4
        as_pooled = (bool(calls) and set(calls) == {((PROMPT,), (END,), 0.7)}
                     and (len(calls) == 1 or METHODS[name].stops_early)
                     and steps_of(result.candidates) == steps_of(pool[:read]))
        assert as_pooled == METHODS[name].pooled


# --------------------------------------------------------------------------------------------
# Greedy
# --------------------------------------------------------------------------------------------


class TestGreedy:
    def test_one_sample_at_temperature_zero(self):
        policy = ScriptedPolicy(Stepper(answer_depth=2))
        result = run(greedy(make_ctx(policy, temperature=0.9, max_solution_tokens=300), 8))
        [call] = policy.calls
        assert (call.prefixes, call.n, call.temperature) == ((PROMPT,), 1, 0.0)
        assert (call.stop, call.max_tokens) == ((END,), 300)
        assert (result.method, result.n, len(result.candidates)) == ("greedy", 1, 1)
        assert result.candidates[0].answer == "7"


# --------------------------------------------------------------------------------------------
# Ledger
# --------------------------------------------------------------------------------------------


class TestLedger:
    @pytest.mark.parametrize("method", [best_of_n, beam_search, dvts])
    def test_ledger_sums_every_call(self, method):
        policy = ScriptedPolicy(Stepper(boxes=lambda path: path[-1] == 0 or len(path) >= 4))
        scorer = ScriptedScorer(parameters=500)
        ctx = make_ctx(policy, scorer, width=2)
        result = run(method(ctx, 8))
        ledger = result.ledger
        assert ledger is ctx.ledger
        assert_ledger_charges_every_call(ledger, policy, scorer)
        assert ledger.policy_flops == 2 * 1000 * ledger.policy.computed
        assert scorer.calls
        assert ledger.scorer_flops == 2 * 500 * ledger.scorer.prompt
        assert ledger.total_flops == ledger.policy_flops + ledger.scorer_flops

    def test_several_rounds_make_several_calls(self):
        policy = ScriptedPolicy(Stepper(answer_depth=3))
        result = run(beam_search(make_ctx(policy, ScriptedScorer(), width=2), 4))
        assert result.ledger.policy_calls == len(policy.calls) == 3
        assert result.ledger.scorer_calls == 3

    def test_flops_unknown_without_parameters(self):
        policy = ScriptedPolicy(Stepper(answer_depth=2), parameters=None)
        result = run(best_of_n(make_ctx(policy, ScriptedScorer()), 2))
        assert result.ledger.policy.computed > 0
        assert result.ledger.policy_flops is None and result.ledger.total_flops is None


# --------------------------------------------------------------------------------------------
# Splitting a continuation into steps
# --------------------------------------------------------------------------------------------


def continuation(text, offsets, logprobs=None, generated=None):
    return Continuation(text=text, finish_reason="stop", prompt_tokens=3,
                        cached_prompt_tokens=0,
                        generated_tokens=len(offsets) if generated is None else generated,
                        token_logprobs=logprobs, token_offsets=offsets)


class TestSplitContinuation:
    def test_tokens_go_to_the_step_they_start_in(self):
        # tokens: "ab" "c" | "\n\n" (in the delimiter: goes to the step before) | "de"
        cont = continuation("abc\n\nde", (0, 2, 3, 5), (-0.1, -0.2, -0.3, -0.4))
        first, second = split_continuation(cont, DELIM)
        assert first == Step("abc", 3, (-0.1, -0.2, -0.3))
        assert second == Step("de", 1, (-0.4,))

    def test_tokens_before_the_first_step_go_to_it(self):
        cont = continuation("\n\nab\n\ncd", (0, 2, 6), (-1.0, -2.0, -3.0))
        first, second = split_continuation(cont, DELIM)
        assert first == Step("ab", 2, (-1.0, -2.0))
        assert second == Step("cd", 1, (-3.0,))

    def test_empty_pieces_are_skipped(self):
        cont = continuation("ab\n\n \n\ncd", (0, 4, 7), (-1.0, -2.0, -3.0))
        steps = split_continuation(cont, DELIM)
        assert [s.text for s in steps] == ["ab", "cd"]
        assert [s.generated_tokens for s in steps] == [2, 1]

    def test_steps_after_a_boxed_step_are_dropped(self):
        cont = continuation("a\n\n\\boxed{2}\n\nc", (0, 3, 14), (-1.0, -2.0, -3.0))
        steps = split_continuation(cont, DELIM)
        assert [s.text for s in steps] == ["a", "\\boxed{2}"]
        assert [s.token_logprobs for s in steps] == [(-1.0,), (-2.0,)]

    def test_other_delimiters(self):
        cont = continuation("a ## b", (0, 5), (-1.0, -2.0))
        assert split_continuation(cont, " ## ") == [Step("a", 1, (-1.0,)), Step("b", 1, (-2.0,))]

    def test_without_offsets_tokens_are_shared_by_length_and_logprobs_dropped(self):
        cont = continuation("aaa\n\nb", None, (-1.0,) * 8, generated=8)
        first, second = split_continuation(cont, DELIM)
        assert (first.generated_tokens, second.generated_tokens) == (6, 2)
        assert first.token_logprobs is None and second.token_logprobs is None

    def test_tokens_without_offsets_go_to_the_last_step_and_logprobs_are_kept(self):
        # a real engine's stop-string and end-of-sequence tokens have no text and no offset
        cont = continuation("ab\n\ncd", (0, 4), (-1.0, -2.0), generated=4)
        steps = split_continuation(cont, DELIM)
        assert [s.generated_tokens for s in steps] == [1, 3]
        assert [s.token_logprobs for s in steps] == [(-1.0,), (-2.0,)]

    def test_more_offsets_than_tokens_are_not_used(self):
        cont = continuation("ab\n\ncd", (0, 1, 4, 5), (-1.0, -1.0, -2.0, -2.0), generated=2)
        steps = split_continuation(cont, DELIM)
        assert [s.generated_tokens for s in steps] == [1, 1]
        assert all(s.token_logprobs is None for s in steps)

    def test_offsets_without_logprobs(self):
        cont = continuation("ab\n\ncd", (0, 4), None)
        steps = split_continuation(cont, DELIM)
        assert [(s.generated_tokens, s.token_logprobs) for s in steps] == [(1, None), (1, None)]

    def test_empty_text_has_no_steps(self):
        assert split_continuation(continuation("  \n\n ", (), None), DELIM) == []

    def test_single_step_keeps_the_whole_continuation(self):
        cont = continuation("x = 1\n\ny", (0, 2, 4, 7), (-0.5, -0.5, -0.5, -0.1))
        assert single_step(cont) == Step("x = 1\n\ny", 4, (-0.5, -0.5, -0.5, -0.1))


class TestSolveJobs:
    """A problem's jobs through the registry's one entry point: the pooled methods from one
    pool, each charged for the solutions it read."""

    def test_one_pool_answers_every_pooled_job_and_each_pays_what_it_read(self):
        from ttscale.search import solve_jobs

        policy, scorer = ScriptedPolicy(Stepper(answer_depth=2)), ScriptedScorer()
        ctx = make_ctx(policy, scorer, temperature=0.7)
        jobs = [("majority", 16), ("bon", 4), ("esc", 16), ("beam", 4)]
        results = {(j.method, j.n): j for j in run(solve_jobs(ctx, jobs))}
        assert set(results) == set(jobs)
        pool_calls = [c for c in policy.calls if c.prefixes == (PROMPT,) and c.n == 16]
        assert len(pool_calls) == 1  # majority, Best-of-N and ESC read one pool of 16
        pool = results[("majority", 16)]
        esc = results[("esc", 16)]
        # every sample answers 7: ESC stops after its first window of 5
        assert len(esc.result.candidates) == 5 and esc.result.details.stopped_by == "agreement"
        assert [c.steps for c in esc.result.candidates] == [
            c.steps for c in pool.result.candidates[:5]]
        for job in (pool, esc, results[("bon", 4)]):
            read = job.result.candidates
            assert job.pool_size == 16
            assert job.result.ledger.policy == TokenCount.total(c.policy_tokens for c in read)
        assert esc.result.ledger.policy.generated < pool.result.ledger.policy.generated
        assert results[("beam", 4)].pool_size is None  # its own search, its own tree
        assert results[("beam", 4)].result.tree is not pool.result.tree
