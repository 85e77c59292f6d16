"""The compute ledger: token arithmetic and FLOPs."""

from __future__ import annotations

import json

from ttscale.compute import Ledger, TokenCount, flops


class TestTokenCount:
    def test_defaults_to_zero(self):
        assert TokenCount() == TokenCount(0, 0, 0)
        assert TokenCount().computed == 0

    def test_addition_is_fieldwise(self):
        total = TokenCount(10, 4, 3) + TokenCount(1, 2, 30)
        assert (total.prompt, total.cached_prompt, total.generated) == (11, 6, 33)

    def test_computed_excludes_cached_prompt(self):
        assert TokenCount(prompt=100, cached_prompt=60, generated=7).computed == 47

    def test_total(self):
        counts = [TokenCount(1, 0, 2), TokenCount(5, 5, 0), TokenCount(3, 1, 4)]
        assert TokenCount.total(counts) == TokenCount(9, 6, 6)
        assert TokenCount.total(iter(counts)) == TokenCount(9, 6, 6)
        assert TokenCount.total([]) == TokenCount()

    def test_dict_round_trip(self):
        count = TokenCount(12, 5, 8)
        assert count.to_dict() == {"prompt": 12, "cached_prompt": 5, "generated": 8}
        assert TokenCount.from_dict(json.loads(json.dumps(count.to_dict()))) == count
        assert TokenCount.from_dict({"prompt": "3", "cached_prompt": 0, "generated": 1.0}) \
            == TokenCount(3, 0, 1)


class TestFlops:
    def test_two_times_parameters_times_computed_tokens(self):
        assert flops(1_000, TokenCount(100, 40, 25)) == 2.0 * 1_000 * 85

    def test_unknown_parameters(self):
        assert flops(None, TokenCount(100, 0, 10)) is None

    def test_zero_parameters(self):
        assert flops(0, TokenCount(100, 0, 10)) == 0.0


class TestLedger:
    def test_adds_and_counts_calls(self):
        ledger = Ledger(policy_parameters=1_000, scorer_parameters=10)
        ledger.add_policy(TokenCount(10, 2, 5))
        ledger.add_policy(TokenCount(20, 0, 7))
        ledger.add_scorer(TokenCount(30, 0, 0))
        assert ledger.policy == TokenCount(30, 2, 12) and ledger.policy_calls == 2
        assert ledger.scorer == TokenCount(30, 0, 0) and ledger.scorer_calls == 1
        assert ledger.policy_flops == 2.0 * 1_000 * 40
        assert ledger.scorer_flops == 2.0 * 10 * 30
        assert ledger.total_flops == 80_000 + 600

    def test_a_scorer_that_computed_nothing_costs_nothing(self):
        ledger = Ledger(policy_parameters=1_000, scorer_parameters=None)
        ledger.add_policy(TokenCount(4, 0, 1))
        ledger.add_scorer(TokenCount())
        assert ledger.scorer_flops == 0.0
        assert ledger.total_flops == ledger.policy_flops == 10_000

    def test_unknown_sizes_make_the_total_unknown(self):
        scorer_unknown = Ledger(policy_parameters=1_000, scorer_parameters=None)
        scorer_unknown.add_scorer(TokenCount(5, 0, 0))
        assert scorer_unknown.scorer_flops is None and scorer_unknown.total_flops is None
        policy_unknown = Ledger(policy_parameters=None, scorer_parameters=0)
        policy_unknown.add_policy(TokenCount(5, 0, 1))
        assert policy_unknown.policy_flops is None and policy_unknown.total_flops is None

    def test_ledgers_do_not_share_counts(self):
        first, second = Ledger(1), Ledger(1)
        first.add_policy(TokenCount(1, 0, 1))
        assert second.policy == TokenCount() and second.policy_calls == 0

    def test_to_dict(self):
        ledger = Ledger(policy_parameters=1_000, scorer_parameters=10)
        ledger.add_policy(TokenCount(10, 2, 5))
        ledger.add_scorer(TokenCount(3, 1, 0))
        data = ledger.to_dict()
        assert data == {
            "policy_parameters": 1_000,
            "scorer_parameters": 10,
            "policy_tokens": {"prompt": 10, "cached_prompt": 2, "generated": 5},
            "scorer_tokens": {"prompt": 3, "cached_prompt": 1, "generated": 0},
            "policy_calls": 1,
            "scorer_calls": 1,
            "policy_flops": 26_000.0,
            "scorer_flops": 40.0,
            "total_flops": 26_040.0,
        }
        assert json.loads(json.dumps(data)) == data
