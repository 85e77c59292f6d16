"""The viewer's line on what a method decided, from the entry it writes into its record: real
entries from the methods' own details, one per method family."""

from __future__ import annotations

import pytest

from fakes import ScriptedPolicy, ScriptedScorer, Stepper, make_ctx, run
from ttscale.report.method_notes import method_note
from ttscale.search import METHODS


def _record(method: str, n: int = 4) -> dict:
    result = run(METHODS[method].run(make_ctx(ScriptedPolicy(Stepper(answer_depth=2)),
                                              ScriptedScorer(), width=2), n))
    assert result.details is not None, method
    return {result.details.record_key: result.details.to_dict()}


@pytest.mark.parametrize(("method", "words"), [
    ("esc", "drew 4 of 4 samples (windows 4); stopped: budget"),
    ("adaptive_bon", "stopped: leader safe"),
    ("pf", "1 sweep(s)"),
    ("pgibbs", "2 sweep(s)"),
    ("rebase", "children per frontier node: 4"),
])
def test_each_method_family_gets_its_line(method, words):
    assert words in method_note(_record(method))


def test_a_record_without_a_method_entry_gets_none_and_a_broken_one_is_not_fatal():
    assert method_note({"method": "bon"}) is None
    assert method_note({"adaptive": {"drawn": 3}}) is None  # no budget: shown without it


def test_deepconf_says_how_many_traces_voted_and_stopped():
    entry = {"mode": "online", "threshold": 0.8125, "kept": [3, 5],
             "traces": [{"node": 3, "stopped_at_depth": None}, {"node": 5},
                        {"node": 7, "stopped_at_depth": 2}]}
    assert method_note({"deepconf": entry}) == (
        "online: 2 of 3 traces vote, confidence bar 0.812; 1 stopped early")
