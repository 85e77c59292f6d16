"""The runner, for real on the embedded model: records, resume, kill, determinism."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ttscale.engines.llama_cpp import LlamaCppEngine
from ttscale.errors import RunStateError
from ttscale.prompts import PromptFormat
from ttscale.records import read_records
from ttscale.rewards import load_scorer
from ttscale.run.runner import DatasetSelection, RunConfig, run
from ttscale.settings import SearchSettings

SMALL = SearchSettings(max_step_tokens=40, max_solution_tokens=160, max_depth=4, width=2)
# A run of the command line takes minutes here and several times that on a slow, busy
# machine: the limit only stops one that would never end.
RUN_LIMIT_S = 1200


class CountingPolicy:
    """Wraps a real engine and counts its calls (to prove a resumed run generates nothing)."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        self.engine = engine
        self.calls = 0

    @property
    def info(self):
        return self.engine.info

    async def extend(self, *args, **kwargs):
        self.calls += 1
        return await self.engine.extend(*args, **kwargs)

    def clear_cache(self) -> None:
        self.engine.clear_cache()

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine(n_ctx=8192)


def _config(methods=("majority", "bon", "beam"), budgets=(2, 4), limit=2, settings=SMALL):
    return RunConfig(dataset=DatasetSelection("gsm8k", limit=limit), methods=methods,
                     budgets=budgets, scorer="confidence", settings=settings)


def _run(config, policy, run_dir, parallel=1):
    """One problem at a time (the bit-reproducible mode) unless told otherwise."""
    return asyncio.run(run(config, policy, load_scorer(config.scorer), run_dir, PromptFormat(),
                           parallel=parallel))


def _stable(record: dict) -> dict:
    """A record without what depends on timing or on what the KV cache held before (cached
    prompt tokens): the results and the generated tokens must match exactly."""
    stable = {k: v for k, v in record.items() if k not in ("seconds", "ledger")}
    stable["generated"] = record["ledger"]["policy_tokens"]["generated"]
    return stable


class TestRun:
    @pytest.mark.slow
    def test_records_resume_and_pooled_budgets(self, engine, tmp_path):
        policy = CountingPolicy(engine)
        config = _config()
        outcome = _run(config, policy, tmp_path)
        keys = [r["key"] for r in outcome.records]
        assert len(keys) == 2 * 3 * 2 and len(set(keys)) == len(keys)
        assert outcome.new_records == 12
        first_calls = policy.calls
        assert first_calls > 0
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        assert manifest["model"]["parameters"] == engine.info.parameters
        for record in outcome.records:
            assert record["candidates"], record["key"]
            assert record["ledger"]["policy_tokens"]["generated"] > 0
            assert record["ledger"]["total_flops"] > 0
            assert isinstance(record["correct"], bool)
            nodes = {node["id"] for node in record["tree"]}
            assert all(c["node"] in nodes for c in record["candidates"])
        by_key = {r["key"]: r for r in outcome.records}
        # the work behind the run: each search's own spend, and each problem's pool once (the
        # largest read-off: majority vote and Best-of-N at N=4 both read all of it)
        def computed(t):
            return t["prompt"] - t["cached_prompt"] + t["generated"]

        searches = [r["ledger"] for r in outcome.records if r.get("pool_size") is None]
        pools = [[r["ledger"] for r in outcome.records
                  if r.get("pool_size") and r["problem_id"] == problem]
                 for problem in {r["problem_id"] for r in outcome.records}]
        assert searches and all(len(pool) == 4 for pool in pools)
        assert outcome.policy_generated_tokens == sum(
            ledger["policy_tokens"]["generated"] for ledger in searches) + sum(
            max(ledger["policy_tokens"]["generated"] for ledger in pool) for pool in pools)
        assert outcome.computed_tokens == sum(
            computed(ledger["policy_tokens"]) + computed(ledger["scorer_tokens"])
            for ledger in searches) + sum(
            max(computed(ledger["policy_tokens"]) for ledger in pool)
            + max(computed(ledger["scorer_tokens"]) for ledger in pool) for pool in pools)
        # BoN at N=2 is read off the pool of 4: same first two candidates, half the tokens
        for problem in {r["problem_id"] for r in outcome.records}:
            small, large = by_key[f"{problem}|bon|2"], by_key[f"{problem}|bon|4"]
            assert [c["answer"] for c in small["candidates"]] == [
                c["answer"] for c in large["candidates"][:2]]
            assert (small["ledger"]["policy_tokens"]["generated"]
                    < large["ledger"]["policy_tokens"]["generated"])
            assert len(large["candidates"]) == 4
        # the same command again: nothing new, no generation at all
        again = _run(config, policy, tmp_path)
        assert again.new_records == 0 and policy.calls == first_calls
        assert len(again.records) == 12

    @pytest.mark.slow
    def test_same_seed_same_records(self, engine, tmp_path):
        config = _config(methods=("bon", "dvts"), budgets=(2,), limit=1)
        a = _run(config, engine, tmp_path / "a").records
        b = _run(config, engine, tmp_path / "b").records
        assert [_stable(r) for r in a] == [_stable(r) for r in b]
        other = _config(methods=("bon", "dvts"), budgets=(2,), limit=1,
                        settings=replace(SMALL, seed=7))
        c = _run(other, engine, tmp_path / "c").records
        assert [r["tree"] for r in a] != [r["tree"] for r in c]

    @pytest.mark.slow
    def test_bad_line_reported_skipped_and_redone(self, engine, tmp_path, caplog):
        config = _config(methods=("bon",), budgets=(2,), limit=2)
        _run(config, engine, tmp_path)
        path = tmp_path / "records.jsonl"
        lines = path.read_text().splitlines()
        lines[0] = lines[0][: len(lines[0]) // 2]  # a corrupted record in the middle
        path.write_text("\n".join(lines) + "\n")
        outcome = _run(config, engine, tmp_path)
        assert outcome.skipped_bad_lines == 1
        assert outcome.new_records == 1  # the lost record was made again
        assert "line 1 skipped" in caplog.text

    @pytest.mark.slow
    def test_other_settings_refused(self, engine, tmp_path):
        _run(_config(methods=("bon",), budgets=(2,), limit=1), engine, tmp_path)
        changed = _config(methods=("bon",), budgets=(2,), limit=1,
                          settings=replace(SMALL, temperature=0.3))
        with pytest.raises(RunStateError, match="differs in: settings"):
            _run(changed, engine, tmp_path)


def _cli_run(out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "ttscale.cli.main", "run", "--dataset", "gsm8k",
            "--limit", str(limit), "--method", "bon,beam", "--n", "2", "--width", "2",
            "--max-step-tokens", "40", "--max-solution-tokens", "160", "--max-depth", "4",
            "--n-ctx", "8192", "--parallel", "1", "--out", str(out)]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # two whole runs and a resume, each bounded by RUN_LIMIT_S
class TestKillAndResume:
    def test_sigkill_mid_run_then_resume_matches_uninterrupted(self, tmp_path):
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        killed = tmp_path / "killed"
        process = subprocess.Popen(_cli_run(killed, 3), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        records = killed / "records.jsonl"
        deadline = time.monotonic() + RUN_LIMIT_S
        while time.monotonic() < deadline:
            if records.exists() and records.read_text().count("\n") >= 2:
                break
            if process.poll() is not None:
                pytest.fail(f"run ended before the kill: {process.stderr.read().decode()}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with records.open("a") as handle:  # as if the kill had cut a record in half
            handle.write('{"version": 1, "key": "gsm8k-test-0002|beam|2", "answ')
        before = read_records(records)
        assert len(before.bad_lines) == 1
        resumed = subprocess.run(_cli_run(killed, 3), env=env, capture_output=True, text=True,
                                 timeout=RUN_LIMIT_S)
        assert resumed.returncode == 0, resumed.stderr
        assert "incomplete last record" in resumed.stderr
        after = read_records(records)
        assert not after.bad_lines
        keys = [r["key"] for r in after.records]
        assert len(keys) == len(set(keys)) == 3 * 2
        # every record that existed before the kill is kept as it was
        assert all(r in after.records for r in before.records)
        whole = tmp_path / "whole"
        complete = subprocess.run(_cli_run(whole, 3), env=env, capture_output=True, text=True,
                                  timeout=RUN_LIMIT_S)
        assert complete.returncode == 0, complete.stderr
        reference = {r["key"]: _stable(r) for r in read_records(whole / "records.jsonl").records}
        assert {r["key"]: _stable(r) for r in after.records} == reference
