"""A planner study that starts from runs measured beforehand (``--import-runs``): their records
are copied in where they are the records the study would write, and only the rest is run."""

from __future__ import annotations

import asyncio
import json

import pytest

from fakes import ScriptedPolicy
from ttscale.errors import ConfigError, RunStateError
from ttscale.prompts import PromptFormat
from ttscale.records import read_records
from ttscale.rewards import load_scorer
from ttscale.run.calibrate import DIFFICULTY_SEED_OFFSET, StudyConfig, calibrate, run_half
from ttscale.run.import_runs import import_records
from ttscale.run.runner import DatasetSelection, RunConfig, fingerprint, run
from ttscale.settings import SearchSettings

SETTINGS = SearchSettings(max_solution_tokens=200, step_aggregation="min", width=2)


def student(prefix, j, stop):
    """Right on even samples, wrong on odd ones, with arithmetic a checker can read."""
    if j % 2 == 0:
        return "Step 1: 3 + 4 = 7.\n\nThe answer is \\boxed{7}.", "eos"
    return "Step 1: 3 + 4 = 8.\n\nThe answer is \\boxed{8}.", "eos"


def problems(tmp_path, name="problems.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": f"p{k}", "problem": f"What is 3 + 4 ({k})?",
                                        "answer": "7"}) + "\n" for k in range(8)))
    return DatasetSelection(name=str(path))


def measured(tmp_path, dataset, folder, methods, scorer, settings=SETTINGS):
    """A `ttscale run` of ``methods`` at budgets 2 and 4, as the study would run them."""
    config = RunConfig(dataset=dataset, methods=methods, budgets=(2, 4), scorer=scorer,
                       settings=settings)
    scoring = load_scorer(scorer) if scorer != "none" else None
    asyncio.run(run(config, ScriptedPolicy(student), scoring, tmp_path / folder,
                    PromptFormat()))
    return tmp_path / folder


def study(dataset) -> StudyConfig:
    return StudyConfig(dataset=dataset, methods=("majority", "bon", "beam"), budgets=(2, 4),
                       scorer="arithmetic", settings=SETTINGS, probe_size=2,
                       difficulty_samples=2, min_problems=1)


def records(folder):
    return {r["key"]: r for r in read_records(folder / "records.jsonl").records}


def test_a_study_takes_the_records_of_earlier_runs_and_runs_only_its_pass_rates(tmp_path):
    dataset = problems(tmp_path)
    unscored = measured(tmp_path, dataset, "unscored", ("majority",), "none",
                        SearchSettings(max_solution_tokens=200, width=2))  # step agg. last
    scored = measured(tmp_path, dataset, "scored", ("bon", "beam"), "arithmetic")
    config, policy = study(dataset), ScriptedPolicy(student)
    out = tmp_path / "study"
    plan = asyncio.run(calibrate(config, policy, load_scorer("arithmetic"), PromptFormat(),
                                 out, imports=[unscored, scored]))
    # the policy drew only the pass@1 samples, at their own seed
    assert policy.calls and {c.seed for c in policy.calls} == {SETTINGS.seed +
                                                               DIFFICULTY_SEED_OFFSET}
    calibration_ids = set(plan.info["calibration_problems"])
    earlier = {**records(unscored), **records(scored)}
    taken = records(out / "runs" / "calibration")
    assert set(taken) == {k for k, r in earlier.items() if r["problem_id"] in calibration_ids}
    assert all(taken[k] == earlier[k] for k in taken)  # copied as they were
    assert plan.info["imports"] == [str(unscored), str(scored)]
    assert any(plan.choices.values())

    # the evaluation half takes the rest from the same folders
    _, evaluation_ids = config.split()
    policy.calls.clear()
    asyncio.run(run_half(config, "evaluation", evaluation_ids, policy,
                         load_scorer("arithmetic"), PromptFormat(), out, imports=[unscored,
                                                                                  scored]))
    assert {c.seed for c in policy.calls} == {SETTINGS.seed + DIFFICULTY_SEED_OFFSET}
    assert set(records(out / "runs" / "evaluation")) == {
        k for k, r in earlier.items() if r["problem_id"] in set(evaluation_ids)}


def test_a_scored_method_of_another_step_aggregation_is_left_and_run_again(tmp_path):
    dataset = problems(tmp_path)
    other = measured(tmp_path, dataset, "last", ("majority", "bon"), "arithmetic",
                     SearchSettings(max_solution_tokens=200, width=2, step_aggregation="last"))
    config = study(dataset)
    run_config = config.run_config([f"p{k}" for k in range(8)])
    identity = fingerprint(run_config, ScriptedPolicy(student).info, PromptFormat())
    target = tmp_path / "half"
    [tally] = import_records([other], target, identity, [f"p{k}" for k in range(8)],
                             run_config.jobs())
    kept = records(target)
    assert kept and {r["method"] for r in kept.values()} == {"majority"}
    assert tally.imported == len(kept) == 16  # 8 problems at budgets 2 and 4
    assert tally.left == {"records of scored methods whose run differs in "
                          "settings.step_aggregation": 16}
    # importing again takes nothing twice
    [again] = import_records([other], target, identity, [f"p{k}" for k in range(8)],
                             run_config.jobs())
    assert again.imported == 0 and again.left["records already in the study"] == 16
    assert len(records(target)) == 16
    # a folder begun under other settings takes nothing: its run would refuse them all
    (target / "manifest.json").write_text(json.dumps({"identity": {
        **identity, "settings": {**identity["settings"], "max_depth": 3}}}))
    with pytest.raises(RunStateError, match="differs in: settings.max_depth"):
        import_records([other], target, identity, ["p0"], run_config.jobs())
    assert len(records(target)) == 16


def test_a_run_of_another_dataset_or_a_folder_that_is_no_run_is_refused(tmp_path):
    elsewhere = measured(tmp_path, problems(tmp_path, "other.jsonl"), "other", ("majority",),
                         "none")
    config = study(problems(tmp_path))
    with pytest.raises(ConfigError, match="ran another dataset than this study"):
        asyncio.run(calibrate(config, ScriptedPolicy(student), load_scorer("arithmetic"),
                              PromptFormat(), tmp_path / "study", imports=[elsewhere]))
    with pytest.raises(ConfigError, match="is not a run folder"):
        asyncio.run(calibrate(config, ScriptedPolicy(student), load_scorer("arithmetic"),
                              PromptFormat(), tmp_path / "study", imports=[tmp_path]))


def test_the_command_refuses_a_folder_that_is_no_run_before_loading_a_model(tmp_path):
    from typer.testing import CliRunner

    from ttscale.cli.main import app

    dataset = problems(tmp_path)
    result = CliRunner().invoke(app, [
        "plan", "calibrate", "--out", str(tmp_path / "study"), "--dataset", dataset.name,
        "--import-runs", str(tmp_path), "--model", str(tmp_path / "no-such-model.gguf")])
    assert result.exit_code != 0
    assert "is not a run folder" in result.output and "no-such-model" not in result.output
