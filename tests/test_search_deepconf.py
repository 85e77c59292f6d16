"""DeepConf (offline and online) against a scripted policy whose token log-probs are known:
every token of a step has log-prob ln(m), m the step's ``[s=m]`` mark, so a trace whose steps
are all marked m has confidence m. No model runs here."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace

import pytest

from fakes import (
    END,
    PROMPT,
    ScriptedPolicy,
    Stepper,
    marked_score,
    path_of,
    tokenize,
)
from ttscale.compute import Ledger, TokenCount
from ttscale.errors import ConfigError
from ttscale.search import deepconf as dc
from ttscale.search import methods
from ttscale.search.aggregate import choose, select_answer
from ttscale.search.best_of_n import majority_vote
from ttscale.search.context import SearchContext
from ttscale.search.deepconf import (
    deepconf,
    deepconf_online,
    group_confidence,
    keep_threshold,
    lowest_group_confidence,
    newest_group_confidence,
    percentile,
    tail_confidence,
)
from ttscale.search.methods import MethodSpec
from ttscale.settings import SearchSettings

DELIM = "\n\n"
TOKENS_PER_ANSWER_STEP = 9  # the same + "so the answer is \boxed{a}"


class MarkedPolicy(ScriptedPolicy):
    """A scripted policy whose every token has log-prob ln(mark of the step it starts in)."""

    def _continue(self, prefix, text, finish, stop, max_tokens):
        continuation = super()._continue(prefix, text, finish, stop, max_tokens)
        if continuation.token_offsets is None:
            return continuation
        starts, position = [], 0
        for piece in continuation.text.split(DELIM):
            starts.append((position, marked_score(piece)))
            position += len(piece) + len(DELIM)
        logprobs = tuple(math.log([m for start, m in starts if start <= offset][-1])
                         for offset in continuation.token_offsets)
        return replace(continuation, token_logprobs=logprobs)


def marks(table: dict[int, list[float]]):
    """Stepper scores: sample j's step at depth d is marked table[j][d - 1]."""
    return lambda path: table[path[0]][len(path) - 1]


def stepper(table, answers=None, depth=3, **kwargs) -> Stepper:
    answers = answers or {}
    return Stepper(answer_depth=depth, score=marks(table),
                   answer=lambda path: answers.get(path[0], "7"), **kwargs)


def make_ctx(policy, **settings) -> SearchContext:
    settings.setdefault("end_stops", (END,))
    return SearchContext(problem="what is 3 + 4?", prompt=PROMPT, policy=policy, scorer=None,
                         settings=SearchSettings(**settings),
                         ledger=Ledger(policy.info.parameters))


def run(coro):
    return asyncio.run(coro)


def search(method, step_writer, n, logprobs=True, **settings):
    policy = MarkedPolicy(step_writer, logprobs=logprobs)
    ctx = make_ctx(policy, **settings)
    return run(method(ctx, n)), policy, ctx


def constant(values: list[float], depth: int = 3) -> dict[int, list[float]]:
    """Sample j's steps all marked values[j]: its confidence is values[j]."""
    return {j: [v] * depth for j, v in enumerate(values)}


def ledger_matches_calls(result, policy) -> None:
    conts = policy.continuations
    assert result.ledger.policy == TokenCount(
        prompt=sum(c.prompt_tokens for c in conts),
        cached_prompt=sum(c.cached_prompt_tokens for c in conts),
        generated=sum(c.generated_tokens for c in conts))
    # counted apart from the engine's report: every token of the text, + the stop token
    assert result.ledger.policy.generated == sum(
        len(tokenize(c.text)) + (c.finish_reason != "length") for c in conts)
    assert result.ledger.policy_calls == len(policy.calls)


def snapshot(result):
    json.dumps(result.details.to_dict())  # the run record stores it as JSON
    return ([(c.node_id, c.steps, c.step_scores, c.finish_reason) for c in result.candidates],
            result.tree.to_dict(), result.details.to_dict(), result.ledger.to_dict())


# --------------------------------------------------------------------------------------------
# Confidence
# --------------------------------------------------------------------------------------------


class TestConfidence:
    LOGPROBS = [0.0, 0.0, -4.0, 0.0, -2.0, -2.0]  # mean -4/3

    def test_a_group_is_its_geometric_mean_token_probability(self):
        assert group_confidence([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)
        assert group_confidence([]) == 0.0

    def test_a_trace_of_at_most_one_window_is_one_group(self):
        for window in (6, 7, 2048):
            assert lowest_group_confidence(self.LOGPROBS, window) == pytest.approx(
                math.exp(-4 / 3))

    def test_the_lowest_group_slides_by_one_token(self):
        # windows of 2: 0, -2, -2, -1, -2; of 4: -1, -1.5, -2; of 5: -1.2, -1.6
        assert lowest_group_confidence(self.LOGPROBS, 2) == pytest.approx(math.exp(-2))
        assert lowest_group_confidence(self.LOGPROBS, 4) == pytest.approx(math.exp(-2))
        assert lowest_group_confidence(self.LOGPROBS, 5) == pytest.approx(math.exp(-1.6))

    def test_tail_confidence_reads_the_last_window(self):
        assert tail_confidence(self.LOGPROBS, 3) == pytest.approx(math.exp(-4 / 3))
        assert tail_confidence(self.LOGPROBS, 1) == pytest.approx(math.exp(-2))
        assert tail_confidence(self.LOGPROBS, 100) == pytest.approx(math.exp(-4 / 3))

    def test_the_online_check_reads_the_groups_the_new_tokens_completed(self):
        lps = self.LOGPROBS
        assert newest_group_confidence(lps, 4, 2) == pytest.approx(math.exp(-2))  # ends 5, 6
        assert newest_group_confidence(lps, 2, 2) == pytest.approx(math.exp(-2))  # ends 3..6
        assert newest_group_confidence(lps, 3, 3) == pytest.approx(math.exp(-2))  # ends 4..6
        assert newest_group_confidence(lps, 5, 3) == pytest.approx(math.exp(-4 / 3))  # end 6
        assert newest_group_confidence(lps, 6, 2) is None  # nothing new
        # at most one window: the trace so far
        assert newest_group_confidence(lps[:3], 2, 4) == pytest.approx(math.exp(-4 / 3))
        assert newest_group_confidence(lps[:4], 3, 4) == pytest.approx(math.exp(-1))

    def test_percentile_interpolates_linearly_between_ranks(self):
        values = [0.8, 0.2, 0.6, 0.4]
        assert percentile(values, 90) == pytest.approx(0.74)  # rank 2.7
        assert percentile(values, 10) == pytest.approx(0.26)  # rank 0.3
        assert percentile(values, 50) == pytest.approx(0.5)
        assert (percentile(values, 0), percentile(values, 100)) == (0.2, 0.8)
        assert keep_threshold(values, 10) == percentile(values, 90)


# --------------------------------------------------------------------------------------------
# Offline
# --------------------------------------------------------------------------------------------

# eight traces of distinct confidence, listed by sample
CONFIDENCES = [0.3, 0.9, 0.1, 0.7, 0.5, 0.8, 0.2, 0.6]


class TestOffline:
    @pytest.mark.parametrize(("keep_percent", "kept"), [
        (10, 1),  # 8 - ceil(0.9 * 7) = 1
        (50, 4),  # 8 - ceil(3.5)
        (60, 5),  # 8 - ceil(2.8)
        (90, 7),  # 8 - ceil(0.7)
    ])
    def test_keeps_exactly_the_top_eta_percent(self, monkeypatch, keep_percent, kept):
        monkeypatch.setattr(dc, "KEEP_PERCENT", keep_percent)
        result, _, _ = search(deepconf, stepper(constant(CONFIDENCES)), 8)
        top = sorted(range(8), key=lambda j: -CONFIDENCES[j])[:kept]
        details = result.details.to_dict()
        assert [t["votes"] for t in details["traces"]] == [j in top for j in range(8)]
        assert details["threshold"] == pytest.approx(percentile(CONFIDENCES, 100 - keep_percent))
        assert details["keep_percent"] == keep_percent
        for j, (candidate, trace) in enumerate(zip(result.candidates, details["traces"],
                                                   strict=True)):
            assert trace["confidence"] == pytest.approx(CONFIDENCES[j])
            score = trace["confidence"] if j in top else 0.0
            assert candidate.step_scores == (score,) * 3

    def test_tail_confidence_is_an_option(self, monkeypatch):
        # windows of 9 tokens: the lowest one starts in the first step, the last one is the
        # answer step
        monkeypatch.setattr(dc, "GROUP_WINDOW", TOKENS_PER_ANSWER_STEP)
        monkeypatch.setattr(dc, "TRACE_MEASURE", "tail")
        table = {0: [0.2, 0.9, 0.9], 1: [0.5, 0.5, 0.5]}
        result, _, _ = search(deepconf, stepper(table), 2)
        details = result.details.to_dict()
        assert details["measure"] == "tail"
        assert [t["confidence"] for t in details["traces"]] == pytest.approx([0.9, 0.5])
        assert [t["votes"] for t in details["traces"]] == [True, False]
        lowest = lowest_group_confidence(
            [math.log(0.2)] * 4 + [math.log(0.9)] * 13, TOKENS_PER_ANSWER_STEP)
        assert lowest == pytest.approx(math.exp((4 * math.log(0.2) + 5 * math.log(0.9)) / 9))

    def test_the_default_is_deepconf_low(self):
        assert dc.KEEP_PERCENT == dc.DEEPCONF_LOW == 10 and dc.DEEPCONF_HIGH == 90
        assert (dc.GROUP_WINDOW, dc.WARMUP_TRACES, dc.TRACE_MEASURE) == (2048, 16,
                                                                         "lowest_group")

    def test_traces_tied_at_the_threshold_are_all_kept(self):
        tied = [0.9, 0.4, 0.9, 0.3, 0.2, 0.9, 0.5, 0.1]  # the top 10 % falls inside the tie
        result, _, _ = search(deepconf, stepper(constant(tied)), 8)
        kept = [t["votes"] for t in result.details.to_dict()["traces"]]
        assert kept == [c == 0.9 for c in tied]

    def test_traces_without_an_answer_are_not_ranked(self, monkeypatch):
        monkeypatch.setattr(dc, "KEEP_PERCENT", 50)
        answers = {1: None, 5: None}  # the two most confident write no answer
        result, _, _ = search(deepconf, stepper(constant(CONFIDENCES), answers), 8)
        details = result.details.to_dict()
        ranked = [c for j, c in enumerate(CONFIDENCES) if j not in answers]  # 6 traces
        assert details["threshold"] == pytest.approx(percentile(ranked, 50))
        assert [t["votes"] for t in details["traces"]] == [j in (3, 4, 7) for j in range(8)]

    def test_without_any_answer_every_trace_is_ranked(self):
        answers = dict.fromkeys(range(8))
        result, _, _ = search(deepconf, stepper(constant(CONFIDENCES), answers), 8)
        assert [t["votes"] for t in result.details.to_dict()["traces"]] == [
            j == 1 for j in range(8)]

    def test_the_vote_is_weighted_by_confidence_over_the_kept_traces(self, monkeypatch):
        monkeypatch.setattr(dc, "KEEP_PERCENT", 60)  # keeps 5 of 8
        confidences = [0.9, 0.85, 0.5, 0.45, 0.4, 0.1, 0.2, 0.3]
        answers = {0: "1", 1: "1", 2: "2", 3: "2", 4: "2", 5: "2", 6: "2", 7: "2"}
        result, _, _ = search(deepconf, stepper(constant(confidences), answers), 8)
        candidates = result.candidates
        assert [c.answer for c in candidates] == [answers[j] for j in range(8)]
        # DeepConf: "1" 0.9 + 0.85 against "2" 0.5 + 0.45 + 0.4, the filtered ones weigh 0
        for step_mode in ("last", "min", "mean"):
            selection, _ = choose(candidates, step_mode, "prm_vote")
            assert selection.answer == "1"
            assert selection.votes["1"] == pytest.approx(1.75)
            assert selection.votes["2"] == pytest.approx(1.35)
        # not the plain vote, nor the unweighted vote of the kept traces
        assert choose(candidates, "last", "majority")[0].answer == "2"
        kept = [c for c in candidates if c.step_scores[0] > 0]
        assert len(kept) == 5
        assert select_answer([c.answer for c in kept], [1.0] * 5, "majority").answer == "2"

    def test_samples_are_majority_votes_streams_in_one_call(self):
        result, policy, _ = search(deepconf, stepper(constant(CONFIDENCES)), 8,
                                   temperature=0.6, max_solution_tokens=500, seed=3)
        [call] = policy.calls
        assert (call.prefixes, call.n, call.stop) == ((PROMPT,), 8, (END,))
        assert (call.temperature, call.max_tokens, call.seed) == (0.6, 500, 3)
        majority, _, _ = search(majority_vote, stepper(constant(CONFIDENCES)), 8,
                                temperature=0.6, max_solution_tokens=500, seed=3)
        assert [c.steps for c in result.candidates] == [c.steps for c in majority.candidates]
        assert result.details.record_key == "deepconf"

    def test_the_tree_holds_every_step_as_sampled(self):
        result, policy, _ = search(deepconf, stepper(constant(CONFIDENCES)), 8)
        tree = result.tree
        assert len(tree.nodes) == 1 + 3 * 8  # every step of every solution
        for candidate in result.candidates:  # the filter is in the scores, not the tree
            chain = tree.path(tree.nodes[candidate.node_id])
            assert [n.status for n in chain] == ["kept", "kept", "finished"]
            assert [n.score for n in chain] == [None] * 3
        ledger_matches_calls(result, policy)

    def test_answered_from_the_shared_pool_as_if_sampled(self, monkeypatch):
        spec = MethodSpec("deepconf", deepconf, False, False, True, "DeepConf")
        monkeypatch.setitem(methods.METHODS, "deepconf", spec)
        writer = stepper(constant(CONFIDENCES))
        policy = MarkedPolicy(writer)
        jobs = run(methods.solve_jobs(make_ctx(policy), [("majority", 8), ("deepconf", 4)]))
        pooled = {job.method: job for job in jobs}["deepconf"].result
        [call] = policy.calls  # the pool's one draw serves both
        assert call.n == 8
        alone, _, _ = search(deepconf, writer, 4)
        assert [(c.steps, c.step_scores) for c in pooled.candidates] == [
            (c.steps, c.step_scores) for c in alone.candidates]
        assert pooled.details.to_dict()["traces"] == alone.details.to_dict()["traces"]
        assert all(n.score is None for n in pooled.tree.nodes)  # the shared tree is untouched

    def test_a_policy_without_logprobs_is_refused(self):
        with pytest.raises(ConfigError, match="llama.cpp, hf or vllm"):
            search(deepconf, stepper(constant(CONFIDENCES)), 4, logprobs=False)

    def test_same_seed_same_run(self):
        first, _, _ = search(deepconf, stepper(constant(CONFIDENCES)), 8, seed=5)
        second, _, _ = search(deepconf, stepper(constant(CONFIDENCES)), 8, seed=5)
        assert snapshot(first) == snapshot(second)


# --------------------------------------------------------------------------------------------
# Online
# --------------------------------------------------------------------------------------------

WARMUP = [0.2, 0.4, 0.6, 0.8]  # s = their 90th percentile = 0.74
ONLINE = {
    4: [0.9, 0.3, 0.9],  # after step 2: sqrt(0.9 * 0.3) = 0.52 < s: stops there
    5: [0.8, 0.8, 0.8],  # finishes with 0.8
    6: [0.7, 0.9, 0.9],  # 0.7 < s after its first step
    7: [0.9, 0.9, 0.8],  # ends at (0.9^8 0.8^9)^(1/17) = 0.846
}


def online_table():
    return {**constant(WARMUP), **ONLINE}


def node_of(tree, path):
    [node] = [n for n in tree.nodes[1:] if path_of(n.step.text) == path]
    return node


class TestOnline:
    @pytest.fixture(autouse=True)
    def four_warmup_traces(self, monkeypatch):
        monkeypatch.setattr(dc, "WARMUP_TRACES", 4)

    def test_warmup_sets_s_as_the_percentile_of_its_confidences(self):
        result, policy, _ = search(deepconf_online, stepper(online_table()), 8)
        details = result.details.to_dict()
        assert details["threshold"] == pytest.approx(0.74)
        assert details["warmup"] == 4
        warmup = [t for t in details["traces"] if t["phase"] == "warmup"]
        assert [t["confidence"] for t in warmup] == pytest.approx(WARMUP)
        first = policy.calls[0]
        assert (first.prefixes, first.n, first.stop, first.first_sample) == (
            (PROMPT,), 4, (END,), 0)

    @pytest.mark.parametrize("keep_percent", [10, 50, 90])
    def test_s_follows_eta(self, monkeypatch, keep_percent):
        monkeypatch.setattr(dc, "KEEP_PERCENT", keep_percent)
        result, _, _ = search(deepconf_online, stepper(online_table()), 5)
        assert result.details.threshold == pytest.approx(percentile(WARMUP, 100 - keep_percent))

    def test_a_trace_stops_at_the_step_its_group_confidence_falls_below_s(self):
        result, policy, ctx = search(deepconf_online, stepper(online_table()), 8)
        tree = result.tree
        stopped = {t["sample"]: t["stopped_at_depth"] for t in result.details.to_dict()["traces"]}
        assert stopped == {0: None, 1: None, 2: None, 3: None, 4: 2, 5: None, 6: 1, 7: None}
        for path in [(4, 0), (6,)]:
            node = node_of(tree, path)
            assert (node.status, node.finish_reason, node.children) == (
                "truncated", dc.LOW_CONFIDENCE, [])
            assert node.score < 0.74
        assert node_of(tree, (4, 0)).score == pytest.approx(math.sqrt(0.9 * 0.3))
        # round 1: the root's samples 4..7, one step each; then only the live traces go on
        rounds = policy.calls[1:]
        assert [(c.n, c.first_sample, c.stop, c.seed) for c in rounds] == [
            (4, 4, (DELIM, END), 0), (1, 0, (DELIM, END), 1), (1, 0, (DELIM, END), 2)]
        assert rounds[0].prefixes == (PROMPT,)
        assert [[path_of(p) for p in c.prefixes] for c in rounds[1:]] == [
            [(4,), (5,), (7,)], [(5, 0), (7, 0)]]
        for call in rounds[1:]:
            for prefix in call.prefixes:
                leaf = node_of(tree, path_of(prefix))
                assert prefix == ctx.prefix(tree.steps(leaf))  # the trace so far

    @pytest.mark.parametrize(("window", "stops_at"), [(4, 4), (2048, None)])
    def test_the_group_is_a_sliding_window(self, monkeypatch, window, stops_at):
        # one 4-token step at 0.4: the window of 4 falls below s = 0.57, the trace's mean
        # so far, (0.95^12 0.4^4)^(1/16) = 0.77, does not
        monkeypatch.setattr(dc, "GROUP_WINDOW", window)
        table = {**constant([0.2, 0.4, 0.5, 0.6], depth=5), 4: [0.95, 0.95, 0.95, 0.4, 0.95]}
        result, _, _ = search(deepconf_online, stepper(table, depth=5), 5)
        assert result.details.threshold == pytest.approx(0.57)
        [online] = [t for t in result.details.to_dict()["traces"] if t["phase"] == "online"]
        assert online["stopped_at_depth"] == stops_at
        assert online["votes"] == (stops_at is None)

    def test_the_vote_is_warmup_at_or_above_s_and_finished_traces(self):
        answers = {3: "1", 5: "2", 7: "2"}
        result, _, _ = search(deepconf_online, stepper(online_table(), answers), 8)
        voters = [path_of(c.steps[0].text)[0] for c in result.candidates]
        assert voters == [3, 5, 7]  # warm-up 0.8 >= 0.74; 5 and 7 finished
        confidence = {t["sample"]: t["confidence"] for t in result.details.to_dict()["traces"]}
        for candidate, j in zip(result.candidates, voters, strict=True):
            assert candidate.step_scores == (confidence[j],) * 3
        assert confidence[7] == pytest.approx(math.exp((8 * math.log(0.9)
                                                        + 9 * math.log(0.8)) / 17))
        selection, _ = choose(result.candidates, "last", "prm_vote")
        assert selection.answer == "2"
        assert selection.votes["2"] == pytest.approx(0.8 + confidence[7])

    def test_the_tree_holds_every_step_with_its_fate(self):
        result, policy, _ = search(deepconf_online, stepper(online_table()), 8)
        tree = result.tree
        online_steps = sum(len(reply) for call in policy.calls[1:] for reply in call.replies)
        assert len(tree.nodes) == 1 + 4 * 3 + online_steps
        assert online_steps == 4 + 3 + 2
        statuses = {path: node_of(tree, path).status for path in [
            (0,), (0, 0), (0, 0, 0), (3,), (3, 0), (3, 0, 0), (4,), (4, 0), (5,), (5, 0),
            (5, 0, 0), (6,), (7, 0, 0)]}
        assert statuses == {
            (0,): "pruned", (0, 0): "pruned", (0, 0, 0): "pruned",  # warm-up below s
            (3,): "kept", (3, 0): "kept", (3, 0, 0): "finished",  # warm-up that votes
            (4,): "kept", (4, 0): "truncated", (6,): "truncated",  # stopped
            (5,): "kept", (5, 0): "kept", (5, 0, 0): "finished", (7, 0, 0): "finished"}
        ledger_matches_calls(result, policy)

    @pytest.mark.parametrize(("n", "warmup"), [(1, 1), (2, 1), (8, 7), (17, 16), (40, 16)])
    def test_warmup_leaves_the_online_phase_a_trace(self, monkeypatch, n, warmup):
        monkeypatch.setattr(dc, "WARMUP_TRACES", 16)
        table = {j: [0.9, 0.9, 0.9] for j in range(n)}
        result, policy, _ = search(deepconf_online, stepper(table), n)
        assert (result.details.warmup, policy.calls[0].n) == (warmup, warmup)
        traces = result.details.to_dict()["traces"]
        assert len(traces) == n  # N traces in all
        assert [t["phase"] for t in traces] == ["warmup"] * warmup + ["online"] * (n - warmup)
        if n > warmup:
            assert (policy.calls[1].n, policy.calls[1].first_sample) == (n - warmup, warmup)

    def test_warmup_traces_are_majority_votes_first_samples(self):
        result, _, _ = search(deepconf_online, stepper(online_table()), 8)
        majority, _, _ = search(majority_vote, stepper(online_table()), 4)
        warmup = [t["node"] for t in result.details.to_dict()["traces"] if t["phase"] == "warmup"]
        assert [tuple(result.tree.steps(result.tree.nodes[leaf])) for leaf in warmup] == [
            c.steps for c in majority.candidates]

    def test_identical_prefixes_draw_distinct_samples_in_one_request(self):
        # every trace's steps are marked alike: the warm-up traces and the online ones all
        # end at the same confidence, s, so none is stopped
        writer = Stepper(answer_depth=3, key=lambda depth, j: 0 if depth == 1 else j,
                         score=lambda path: 0.9 if len(path) == 1 else 0.5)
        result, policy, _ = search(deepconf_online, writer, 8)
        second = policy.calls[2]
        assert second.prefixes == (PROMPT + writer(PROMPT, 0, (DELIM,))[0].split(DELIM)[0]
                                   + DELIM,)
        assert second.n == 4  # the four traces that wrote the same first step
        assert len({c.steps[-1].text for c in result.candidates[-4:]}) == 4

    def test_the_last_round_at_the_depth_limit_runs_to_the_end(self):
        result, policy, _ = search(deepconf_online, stepper(online_table()), 8, max_depth=2,
                                   max_solution_tokens=300)
        last = policy.calls[-1]
        assert (last.stop, last.max_tokens) == ((END,), 300)
        leaf = node_of(result.tree, (5, 0, 0))  # steps 2 and 3 in one node
        assert leaf.depth == 2 and leaf.status == "finished"

    def test_a_policy_without_logprobs_is_refused(self):
        with pytest.raises(ConfigError, match="log-probabilities"):
            search(deepconf_online, stepper(online_table()), 8, logprobs=False)

    def test_same_seed_same_run(self):
        first, _, _ = search(deepconf_online, stepper(online_table()), 8, seed=2)
        second, _, _ = search(deepconf_online, stepper(online_table()), 8, seed=2)
        assert snapshot(first) == snapshot(second)
