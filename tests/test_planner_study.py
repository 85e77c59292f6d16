"""The planner study built on the method study's runs (``benchmarks/planner.py
--from-study``): which problems, methods, budgets and settings it hands to ``ttscale plan
calibrate``, read from run folders written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

SETTINGS = {"temperature": 0.7, "top_p": 1.0, "max_step_tokens": 64, "max_depth": 8,
            "max_solution_tokens": 256, "width": 4, "step_delimiter": None, "end_stops": [],
            "step_aggregation": "min", "answer_aggregation": "prm_vote", "seed": 0}


@pytest.fixture(scope="module")
def study():
    return load_benchmark("planner")


def write_run(folder: Path, methods: list[str], problems: list[str], scorer: str | None,
              dataset: str = "ladder", settings: dict | None = None) -> None:
    folder.mkdir(parents=True)
    settings = {**SETTINGS, **(settings or {})}
    if scorer is None:
        settings["step_aggregation"] = "last"
    (folder / "manifest.json").write_text(json.dumps({
        "identity": {"dataset": dataset, "scorer": scorer, "settings": settings},
        "methods": methods, "budgets": [4, 16]}))
    with (folder / "records.jsonl").open("w") as handle:
        for problem in problems:
            for method in methods:
                handle.write(json.dumps({"key": f"{problem}|{method}", "problem_id": problem,
                                         "method": method}) + "\n")


def ladder(level: int, count: int) -> list[str]:
    return [f"ladder-test-L{level}-{i:04d}" for i in range(count)]


def write_study(run_dir: Path, finished: dict[int, tuple[int, int]], **scored) -> None:
    """Per level, how many problems its unscored and its grounded run finished."""
    for level, (unscored, grounded) in finished.items():
        write_run(run_dir / f"ladder-level-{level}-none", ["greedy", "majority", "esc"],
                  ladder(level, unscored), None)
        write_run(run_dir / f"ladder-level-{level}-grounded", ["bon", "beam", "rebase"],
                  ladder(level, grounded), "grounded", **scored)


def test_each_set_gives_the_problems_both_its_runs_finished(study, tmp_path):
    write_study(tmp_path, {1: (5, 5), 2: (5, 3), 3: (2, 4)})

    selection, options, imports = study.from_method_study(
        tmp_path, ["ladder-level-1", "ladder-level-2", "ladder-level-3"], "grounded")

    assert selection[:3] == ["--dataset", "ladder", "--ids"]
    assert selection[3].split(",") == sorted(ladder(1, 5) + ladder(2, 3) + ladder(3, 2))
    assert [folder.name for folder in imports] == [
        f"ladder-level-{level}-{kind}" for level in (1, 2, 3) for kind in ("none", "grounded")]
    given = dict(zip(options[::2], options[1::2], strict=True))
    assert given["--methods"] == "majority,esc,bon,beam,rebase"  # greedy is no budget to plan
    assert given["--n"] == "4,16"
    assert given["--prm"] == "grounded"
    # the scored runs' settings, not the unscored runs' step aggregation
    assert (given["--step-agg"], given["--answer-agg"]) == ("min", "prm_vote")
    assert (given["--max-step-tokens"], given["--width"], given["--seed"]) == ("64", "4", "0")


def test_a_study_it_cannot_build_on_is_refused_with_what_to_do(study, tmp_path):
    sets = ["ladder-level-1", "ladder-level-2"]
    with pytest.raises(SystemExit, match="run benchmarks/methods.py first"):
        study.from_method_study(tmp_path, sets, "grounded")

    write_study(tmp_path / "unfinished", {1: (3, 0), 2: (0, 2)})
    with pytest.raises(SystemExit, match="no problem of .* is finished in both its runs"):
        study.from_method_study(tmp_path / "unfinished", sets, "grounded")

    write_study(tmp_path / "mixed", {1: (2, 2)})
    write_study(tmp_path / "mixed", {2: (2, 2)}, settings={"max_depth": 6})
    with pytest.raises(SystemExit, match="differ in their search settings"):
        study.from_method_study(tmp_path / "mixed", sets, "grounded")


def test_a_study_on_the_method_study_archives_only_the_samples_it_draws(study, tmp_path):
    # its halves are imported from the method study, whose archive already keeps them
    assert study.drawn_runs(tmp_path, from_study=True) == [tmp_path / "runs" / "difficulty"]
    assert study.drawn_runs(tmp_path, from_study=False) == [
        tmp_path / "runs" / name for name in ("difficulty", "calibration", "evaluation")]
