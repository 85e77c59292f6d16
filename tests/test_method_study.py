"""The method study's bookkeeping (``benchmarks/methods.py``), on records written here: the
compute-optimal choice per budget, the adaptive methods' FLOPs ratios, the ``--headroom``
rule, the archive the study resumes from, and the order and gating of its runs. The runs
themselves are ``ttscale run`` (tested on its own); here they are replaced by a writer of
records, so what is checked is the study's own logic."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import threading
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

SET = "ladder level 1"


@pytest.fixture(scope="module")
def study():
    return load_benchmark("methods")


def record(problem: str, method: str, n: int, correct: bool, flops: float,
           scorer: str | None = None, **extra) -> dict:
    return {"key": f"{problem}|{method}|{n}|{scorer}", "problem_id": problem, "method": method,
            "scorer": scorer, "n": n, "correct": correct, "seconds": 1.0,
            "ledger": {"total_flops": flops, "policy_tokens": {"generated": 10 * n}},
            "candidates": [{}] * n, **extra}


def write_run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"name": folder.name}))
    with (folder / "records.jsonl").open("a") as handle:
        for r in records:
            handle.write(json.dumps(r) + "\n")
    return folder


def right(count: int, total: int = 20) -> list[bool]:
    """``count`` right answers, the first problems, out of ``total``."""
    return [i < count for i in range(total)]


def runs_of(tmp_path: Path, options: dict[tuple[str, int, str | None], tuple[list[bool], float]]
            ) -> list[tuple[str, str, Path]]:
    """Two run folders (unscored, grounded) of SET holding one record per problem for each
    (method, N, scorer): (which problems are right, FLOPs each)."""
    by_scorer: dict[str, list[dict]] = {"none": [], "grounded": []}
    for (method, n, scorer), (correct, flops) in options.items():
        by_scorer[scorer or "none"] += [record(f"p{i}", method, n, ok, flops, scorer)
                                        for i, ok in enumerate(correct)]
    return [(SET, scorer, write_run(tmp_path / f"ladder-level-1-{scorer}", records))
            for scorer, records in by_scorer.items()]


def test_the_choice_at_each_budget_is_the_most_accurate_option_within_it(study, tmp_path):
    runs = runs_of(tmp_path, {
        ("greedy", 1, None): (right(2), 1.0),
        ("majority", 4, None): (right(6), 4.0),
        ("bon", 4, "grounded"): (right(6), 5.0),  # as accurate as majority@4, dearer
        ("majority", 16, None): (right(7), 16.0),
        ("beam", 16, "grounded"): (right(12), 16.0),
    })
    table = study._records(runs)
    best = {choice["budget"]: choice for choice in study.compute_optimal(table)}
    backwards = {choice["budget"]: choice
                 for choice in study.compute_optimal(dict(reversed(table.items())))}
    assert backwards == best  # the choice does not hang on the order of the options

    assert sorted(best) == [1, 4, 16]
    assert (best[1]["method"], best[1]["over_greedy"]) == ("greedy", None)
    # beam@16 is the most accurate of all, but not within a budget of 4; of the two
    # equally accurate options the cheaper is chosen, and the other is tied with it
    assert (best[4]["method"], best[4]["n"], best[4]["scorer"]) == ("majority", 4, "none")
    assert "bon" in [t["method"] for t in best[4]["tied"]]
    assert best[4]["over_greedy"]["value"] == pytest.approx(0.2)
    assert (best[16]["method"], best[16]["n"]) == ("beam", 16)
    assert best[16]["over_greedy"]["value"] == pytest.approx(0.5)
    assert best[16]["over_greedy"]["low"] > 0
    assert "greedy" not in [t["method"] for t in best[16]["tied"]]
    assert {choice["count"] for choice in best.values()} == {20}


def test_options_are_compared_on_the_problems_they_all_answered(study, tmp_path):
    # Best-of-N's run has reached 5 of the 20 problems; greedy is right on 2 of those 5
    # (40 %) and on no other, Best-of-N on 1 of them: over their own problems Best-of-N
    # (20 %) would look better than greedy (10 %)
    runs = runs_of(tmp_path, {("greedy", 1, None): (right(2), 1.0),
                              ("bon", 4, "grounded"): (right(1, total=5), 4.0)})

    best = {choice["budget"]: choice for choice in study.compute_optimal(study._records(runs))}

    assert best[4]["method"] == "greedy"
    assert best[4]["count"] == 5
    assert best[4]["accuracy"]["value"] == pytest.approx(0.4)
    assert [t["method"] for t in best[4]["tied"]] == ["bon"]


def test_the_table_names_the_cheapest_options_within_noise_and_counts_the_rest(study, tmp_path):
    # seven options of 4 as accurate as greedy: all are within noise of the choice (greedy)
    options = {("greedy", 1, None): (right(2), 1.0)}
    options |= {(f"m{k}", 4, "grounded"): (right(2), 10.0 + k) for k in range(7)}
    best = study.compute_optimal(study._records(runs_of(tmp_path, options)))
    choice = next(c for c in best if c["budget"] == 4)
    assert len(choice["tied"]) == 7  # the record keeps every one

    setup = {"machine": "m", "settings": [], "n": [4]}
    line = next(row for row in study.markdown([], [], best, setup).splitlines()
                if row.startswith(f"| {SET} | 4 |"))
    named = [f"m{k}@4/grounded" for k in range(study.TIED_SHOWN)]
    positions = [line.find(name) for name in named]
    assert -1 not in positions and positions == sorted(positions)  # cheapest first
    assert f"m{study.TIED_SHOWN}@4" not in line and "m6@4" not in line
    assert line.rstrip(" |").endswith(f"and {7 - study.TIED_SHOWN} more")


def test_an_adaptive_method_is_paired_with_the_fixed_method_it_stops_early_from(study, tmp_path):
    stopped = {"adaptive": {"drawn": 2}}
    esc = [record(f"p{i}", "esc", 16, i < 5, 4.0, **stopped) for i in range(12)]
    adaptive_bon = [record(f"p{i}", "adaptive_bon", 16, i < 8, 12.0, "grounded", **stopped)
                    for i in range(10)]
    majority = [record(f"p{i}", "majority", 16, i < 6, 16.0) for i in range(10)]
    bon = [record(f"p{i}", "bon", 16, i < 8, 16.0, "grounded") for i in range(10)]
    runs = [(SET, "none", write_run(tmp_path / "none", esc + majority)),
            (SET, "grounded", write_run(tmp_path / "grounded", adaptive_bon + bon))]

    ratios = {r["method"]: r for r in study.adaptive_ratios(study._records(runs))}

    assert sorted(ratios) == ["adaptive_bon", "esc"]  # fixed methods have no ratio
    assert ratios["esc"]["versus"] == "majority"
    assert ratios["esc"]["count"] == 10  # p10 and p11 have no majority record to pair with
    assert ratios["esc"]["flops_ratio"]["value"] == pytest.approx(0.25)
    assert ratios["esc"]["accuracy_difference"]["value"] == pytest.approx(-0.1)
    assert ratios["adaptive_bon"]["versus"] == "bon"
    assert ratios["adaptive_bon"]["flops_ratio"]["value"] == pytest.approx(0.75)
    assert ratios["adaptive_bon"]["accuracy_difference"]["value"] == pytest.approx(0.0)


def headroom_args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(run_dir=tmp_path, headroom=0.2)


def test_headroom_is_read_from_the_finished_unscored_run(study, tmp_path):
    none = tmp_path / "ladder-level-1-none"
    args = headroom_args(tmp_path)
    # pass@16 on 3 of 20 problems, and pass@4 (the smaller budget) on none: the largest counts
    records = [record(f"p{i}", "majority", n, False, 1.0, pass_at_n=(n == 16 and i < 3))
               for i in range(19) for n in (4, 16)]
    write_run(none, records)
    assert study.headroom(tmp_path, SET, 20) is None  # 19 of 20 problems: not finished
    assert study.left_out(args, SET, "self", 20) is None

    write_run(none, [record("p19", "majority", n, False, 1.0, pass_at_n=False)
                     for n in (4, 16)])
    room = study.headroom(tmp_path, SET, 20)
    assert room == {"n": 16, "pass_at_n": pytest.approx(0.15), "problems": 20}
    assert study.left_out(args, SET, "self", 20) == room
    assert study.left_out(argparse.Namespace(run_dir=tmp_path, headroom=0.15),
                          SET, "self", 20) is None  # at the threshold it runs

    write_run(tmp_path / "ladder-level-1-self", [])  # a run already begun is never left out
    assert study.left_out(args, SET, "self", 20) is None


def test_the_archive_restores_a_lost_run_and_packs_the_same_records_to_the_same_bytes(
        study, tmp_path):
    out = write_run(tmp_path / "runs" / "ladder-level-1-none",
                    [record(f"p{i}", "majority", 4, i % 2 == 0, 4.0) for i in range(5)])
    original = (out / "records.jsonl").read_bytes()
    archive = tmp_path / "archive"
    study.archive_runs([(SET, "none", out)], archive)
    packed = (archive / out.name / "records.jsonl.gz").read_bytes()
    assert gzip.decompress(packed) == original
    assert packed[4:8] == bytes(4)  # the gzip header's time stamp is left empty

    study.archive_runs([(SET, "none", out)], archive)
    assert (archive / out.name / "records.jsonl.gz").read_bytes() == packed

    (out / "records.jsonl").unlink()
    study.restore(out, archive)
    assert (out / "records.jsonl").read_bytes() == original
    # a run that is here is never overwritten by its archived copy
    (out / "records.jsonl").write_bytes(original + original)
    study.restore(out, archive)
    assert (out / "records.jsonl").read_bytes() == original + original


def study_args(tmp_path: Path, workers: int) -> argparse.Namespace:
    return argparse.Namespace(
        run_dir=tmp_path / "runs", archive=tmp_path / "archive", levels=[1, 2], per_level=2,
        gsm8k=0, n=[4, 16], scorers=["grounded", "self"], tables_only=False, threads=None,
        workers=workers, parallel=1, flash_attn="auto", headroom=0.2)


class FakeRuns:
    """Stands in for ``ttscale run``: writes a run folder with one record per problem, its
    unscored majority@16 right on level 1 and never on level 2; fails the runs named."""

    def __init__(self, fail: set[str] = frozenset()):
        self.made: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, command: str, *args: str, env=None) -> None:
        options = dict(zip(args, args[1:], strict=False))  # each option with the word after it
        out = Path(options["--out"])
        with self.lock:
            self.made.append(out.name)
        if out.name in self.fail:
            raise subprocess.CalledProcessError(1, ["ttscale", command])
        level = options["--levels"]
        scorer = options["--prm"]
        write_run(out, [record(f"p{i}", "majority", 16, False, 16.0,
                               None if scorer == "none" else scorer,
                               pass_at_n=(level == "1"))
                        for i in range(2)])


@pytest.mark.parametrize("workers", [1, 2])
def test_the_study_runs_every_set_and_leaves_out_the_later_scorers_without_headroom(
        study, tmp_path, monkeypatch, workers):
    fake = FakeRuns()
    monkeypatch.setattr(study, "ttscale", fake)

    runs = study.run_all(study_args(tmp_path, workers), ["majority", "bon"])

    assert sorted(fake.made) == sorted(["ladder-level-1-none", "ladder-level-1-grounded",
                                        "ladder-level-2-none", "ladder-level-2-grounded",
                                        "ladder-level-1-self"])
    if workers == 1:  # breadth first: every set's first scorer before any later one
        assert fake.made[-1] == "ladder-level-1-self"
    assert {(s, c) for s, c, _ in runs} == {(f"ladder level {level}", c) for level in (1, 2)
                                           for c in ("none", "grounded")} | {(SET, "self")}
    # each finished run is archived as it ends
    assert (tmp_path / "archive" / "ladder-level-1-self" / "records.jsonl.gz").exists()


def test_after_a_run_fails_no_other_starts(study, tmp_path, monkeypatch):
    fake = FakeRuns(fail={"ladder-level-1-grounded"})
    monkeypatch.setattr(study, "ttscale", fake)

    with pytest.raises(subprocess.CalledProcessError):
        study.run_all(study_args(tmp_path, 1), ["majority", "bon"])
    assert fake.made == ["ladder-level-1-none", "ladder-level-1-grounded"]


def test_a_scorer_is_tabled_under_the_name_the_study_runs_it_by(study, tmp_path):
    # `--prm self` runs the registry's `confidence` scorer, whose name the records carry
    run = write_run(tmp_path / "ladder-level-1-self",
                    [record("p1", "bon", 4, True, 1.0, "confidence")])
    unscored = write_run(tmp_path / "ladder-level-1-none", [record("p1", "majority", 4, True, 1.0)])
    table = study._records([(SET, "self", run), (SET, "none", unscored)])
    assert set(table) == {(SET, "bon", "self", 4), (SET, "majority", "none", 4)}
