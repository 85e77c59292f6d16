"""Every method of the registry resumes like the others: a run that dies in the middle of a
problem, rerun, ends with exactly the records of a run that never died (one problem at a
time, so the records are the same bit for bit, timing aside)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from fakes import ScriptedPolicy
from ttscale.prompts import PromptFormat
from ttscale.records import read_records
from ttscale.rewards import load_scorer
from ttscale.run.runner import DatasetSelection, RunConfig, run
from ttscale.search import METHODS
from ttscale.settings import SearchSettings

FIXED = tuple(name for name, spec in METHODS.items() if not spec.chooses)


def writer(prefix, j, stop):
    """Two steps, the arithmetic right or wrong by the prefix and the sample: a tree to grow,
    scores to tell apart and answers to vote on, all a function of what is asked."""
    digest = int(hashlib.sha256(f"{prefix}|{j}".encode()).hexdigest(), 16)
    if "Step 1:" not in prefix.rsplit("Problem:", 1)[-1]:  # the few-shot prompt's last one
        total = 7 if digest % 3 else 8
        return f"Step 1: 3 + 4 = {total}.\nThe answer is \\boxed{{{total}}}.", "eos"
    return f"The answer is \\boxed{{{7 if digest % 2 else 6}}}.", "eos"


class Killed(BaseException):
    """Not an error a run records for its problem and goes on: it ends the run, as a kill."""


class Dies(ScriptedPolicy):
    """Dies (as a process killed would stop answering) at its ``after``-th call."""

    def __init__(self, after: int) -> None:
        super().__init__(writer)
        self.after = after

    async def extend(self, *args, **kwargs):
        if len(self.calls) >= self.after:
            raise Killed
        return await super().extend(*args, **kwargs)


def stable(folder):
    return {r["key"]: {k: v for k, v in r.items() if k != "seconds"}
            for r in read_records(folder / "records.jsonl").records}


@pytest.fixture
def config(tmp_path):
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text("".join(json.dumps({"id": f"p{k}", "problem": f"What is 3 + 4? ({k})",
                                           "answer": "7"}) + "\n" for k in range(3)))
    return RunConfig(dataset=DatasetSelection(name=str(dataset)), methods=FIXED, budgets=(4,),
                     scorer="arithmetic",
                     settings=SearchSettings(width=2, max_depth=4, max_solution_tokens=120))


def _run(config, policy, folder):
    return asyncio.run(run(config, policy, load_scorer("arithmetic"), folder, PromptFormat(),
                           parallel=1))


def test_a_run_that_dies_mid_problem_resumes_to_the_records_of_one_that_did_not(config,
                                                                               tmp_path):
    whole = tmp_path / "whole"
    counting = ScriptedPolicy(writer)
    _run(config, counting, whole)
    reference = stable(whole)
    assert {r["method"] for r in reference.values()} == set(FIXED)
    assert len(reference) == 3 * len(FIXED)
    per_problem = len(counting.calls) // 3
    # die half way through the second problem, then again in the third
    for after in (per_problem + per_problem // 2, per_problem // 3):
        with pytest.raises(Killed):
            _run(config, Dies(after), tmp_path / "killed")
        written = stable(tmp_path / "killed")
        assert written and len(written) % len(FIXED) == 0  # whole problems only
        assert all(written[k] == reference[k] for k in written)
    resumed = ScriptedPolicy(writer)
    _run(config, resumed, tmp_path / "killed")
    assert stable(tmp_path / "killed") == reference
    assert len(resumed.calls) < len(counting.calls)  # the finished problems were not redone
