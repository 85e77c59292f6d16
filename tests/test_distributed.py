"""``ttscale run --ray`` on a local Ray (2 CPUs, no dashboard) with the embedded model: the
same records as a local run, and every record exactly once when an actor is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from ttscale.engines import EngineSpec  # noqa: E402
from ttscale.engines.embedded import EMBEDDED_NAME  # noqa: E402
from ttscale.errors import ConfigError  # noqa: E402
from ttscale.prompts import PromptFormat  # noqa: E402
from ttscale.records import read_records  # noqa: E402
from ttscale.rewards import ScorerOptions, load_scorer  # noqa: E402
from ttscale.run.distributed import RayCluster, ShardWorker, WorkerSpec, run_on_ray  # noqa: E402
from ttscale.run.runner import DatasetSelection, RunConfig, run  # noqa: E402
from ttscale.settings import SearchSettings  # noqa: E402

SMALL = SearchSettings(max_step_tokens=40, max_solution_tokens=120, max_depth=3, width=2)
CONFIG = RunConfig(dataset=DatasetSelection("gsm8k", limit=4), methods=("majority", "bon"),
                   budgets=(2,), scorer="confidence", settings=SMALL)
WORKER = WorkerSpec(EngineSpec(n_ctx=4096), "confidence", ScorerOptions())
CLUSTER = RayCluster(actors=2, cpus_per_actor=1)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


def _stable(record: dict) -> dict:
    """A record without what depends on timing or on the prefix cache's state."""
    stable = {k: v for k, v in record.items() if k not in ("seconds", "ledger")}
    stable["generated"] = record["ledger"]["policy_tokens"]["generated"]
    return stable


@pytest.fixture(scope="module")
def local_records(tmp_path_factory) -> dict[str, dict]:
    """The same work run in this process, one problem at a time (bit-reproducible)."""
    from ttscale.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(n_ctx=4096, n_threads=1)
    outcome = asyncio.run(run(CONFIG, engine, load_scorer("confidence"),
                              tmp_path_factory.mktemp("local"), PromptFormat(), parallel=1))
    asyncio.run(engine.close())
    return {r["key"]: _stable(r) for r in outcome.records}


def test_two_actors_write_the_records_of_a_local_run(local_ray, local_records, tmp_path):
    described = []
    outcome = run_on_ray(CONFIG, CLUSTER, WORKER, tmp_path, PromptFormat(), parallel=1,
                         on_actors_ready=described.extend)
    assert len({d["pid"] for d in described}) == 2 and os.getpid() not in {
        d["pid"] for d in described}
    assert outcome.new_records == len(local_records) == 4 * 2
    assert not outcome.failures
    on_disk = read_records(tmp_path / "records.jsonl").records
    assert {r["key"]: _stable(r) for r in on_disk} == local_records
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"]["name"] == described[0]["info"].name
    # resumed: nothing left to do, nothing written again
    again = run_on_ray(CONFIG, CLUSTER, WORKER, tmp_path, PromptFormat(), parallel=1)
    assert again.new_records == 0 and len(read_records(tmp_path / "records.jsonl").records) == 8


def test_a_killed_actor_loses_no_record_and_writes_none_twice(local_ray, local_records,
                                                              tmp_path):
    pids: list[int] = []
    killed: list[int] = []

    def kill_one_after_the_first(done: int, total: int) -> None:
        if done == 1 and not killed:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)  # the actor's process, mid-run

    outcome = run_on_ray(CONFIG, CLUSTER, WORKER, tmp_path, PromptFormat(), parallel=1,
                         on_actors_ready=lambda d: pids.extend(x["pid"] for x in d),
                         on_problem_done=kill_one_after_the_first)
    assert killed, "the run ended before an actor could be killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    keys = [r["key"] for r in read_records(tmp_path / "records.jsonl").records]
    assert sorted(keys) == sorted(local_records) and len(keys) == len(set(keys))
    assert not outcome.failures
    on_disk = read_records(tmp_path / "records.jsonl").records
    assert {r["key"]: _stable(r) for r in on_disk} == local_records


def test_a_problem_that_fails_is_reported_and_the_others_are_written(local_ray, tmp_path):
    problems = tmp_path / "problems.jsonl"
    rows = [{"id": "long", "problem": "Add one. " * 400 + "What is 2 + 2?", "answer": "4"},
            {"id": "short", "problem": "What is 2 + 2?", "answer": "4"}]
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = RunConfig(dataset=DatasetSelection(str(problems)), methods=("bon",),
                       budgets=(2,), scorer="confidence", settings=SMALL)
    # the long problem does not fit the actor's context: it fails inside the actor
    worker = WorkerSpec(EngineSpec(n_ctx=512), "confidence", ScorerOptions())
    outcome = run_on_ray(config, RayCluster(actors=1, cpus_per_actor=1), worker,
                         tmp_path / "run", PromptFormat(), parallel=1)
    assert [f.problem_id for f in outcome.failures] == ["long"]
    assert "context" in outcome.failures[0].message
    assert [r["problem_id"] for r in outcome.records] == ["short"]


def test_cluster_settings_are_checked():
    with pytest.raises(ConfigError, match="--actors"):
        RayCluster(actors=0)
    with pytest.raises(ConfigError, match="--cpus-per-actor"):
        RayCluster(cpus_per_actor=0)


def test_the_worker_builds_what_its_spec_names_and_reports_its_process():
    # an actor (and its restart) loads what the spec says, not the defaults
    worker = ShardWorker(WorkerSpec(EngineSpec(n_ctx=1024), "arith", ScorerOptions()))
    try:
        described = worker.describe()
        assert described["pid"] == os.getpid()  # in process here; the actor's own under Ray
        assert (described["info"].name, worker.policy.n_ctx) == (EMBEDDED_NAME, 1024)
        assert Path(described["info"].extra["path"]).suffix == ".gguf"
        assert worker.scorer.name == "arithmetic"
    finally:
        asyncio.run(worker.policy.close())


def test_the_command_line_refuses_bad_ray_settings_before_starting_ray(monkeypatch):
    from typer.testing import CliRunner

    from ttscale.cli.main import app

    started = []
    # whether or not another test left Ray up, the refusal must come before any Ray call
    monkeypatch.setattr(ray, "is_initialized", lambda: started.append("checked") or False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: started.append("started"))
    cli = CliRunner()
    result = cli.invoke(app, ["run", "--ray", "--actors", "0", "--limit", "1"])
    assert result.exit_code == 2 and "--actors must be at least 1" in result.output
    result = cli.invoke(app, ["run", "--ray", "--prompt", "chat", "--limit", "1"])
    assert result.exit_code == 2 and "--chat-template" in result.output
    assert not started
