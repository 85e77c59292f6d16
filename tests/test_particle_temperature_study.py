"""The particle-temperature study's bookkeeping (``benchmarks/particle_temperature.py``) on
records written here: the resampling diagnostics read from a record's particle history, and
the pairing of every temperature with the study's temperature-1 run. The runs themselves are
``ttscale run`` (tested on its own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("particle_temperature")


def chain_tree(firsts: int, depth: int) -> list[dict]:
    """``firsts`` first steps, each the root of a chain ``depth`` steps long: the node of
    chain ``c`` at depth ``d`` is ``c * depth + d``."""
    nodes = [{"id": 0, "parent": None, "depth": 0}]
    for c in range(firsts):
        for d in range(1, depth + 1):
            nodes.append({"id": c * depth + d, "parent": 0 if d == 1 else c * depth + d - 1,
                          "depth": d})
    return nodes


def particle_record(problem: str, n: int, correct: bool, rounds, final, *, found=None,
                    method: str = "pf", tree=None) -> dict:
    return {"key": f"{problem}|{method}|{n}", "problem_id": problem, "method": method,
            "n": n, "correct": correct,
            "pass_at_n": correct if found is None else found,
            "ledger": {"total_flops": 100.0 * n},
            "tree": tree if tree is not None else chain_tree(4, 3),
            "particles": {"temperature": 1.0, "sweeps": [
                {"rounds": [{"nodes": list(range(len(w))), "weights": w, "ancestors": a}
                            for w, a in rounds], "final": final, "reference": None}]}}


def write_run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_lineages_count_the_first_steps_the_final_particles_descend_from(study):
    tree = chain_tree(4, 3)  # chains 1-2-3, 4-5-6, 7-8-9, 10-11-12
    assert study.lineages(particle_record("p", 4, True, [], [3, 6, 9, 12], tree=tree)) == 4
    assert study.lineages(particle_record("p", 4, True, [], [3, 2, 3, 1], tree=tree)) == 1
    # particle Gibbs: the final particles of every sweep count
    gibbs = particle_record("p", 4, True, [], [3, 3], tree=tree)
    gibbs["particles"]["sweeps"].append({"rounds": [], "final": [12, 3], "reference": None})
    assert study.lineages(gibbs) == 2


def test_resampling_health_reads_the_effective_size_the_collapses_and_the_lineages(study):
    records = [
        # uniform weights: the effective size is every particle; the draws spread
        particle_record("p0", 4, True, [([0.25] * 4, [0, 1, 2, 2])], [3, 6, 9, 9]),
        # one particle holds all the weight: effective size 1 of 4, every draw on it
        particle_record("p1", 4, False, [([1.0, 0.0, 0.0, 0.0], [0, 0, 0, 0]),
                                         ([0.5, 0.5, 0.0, 0.0], None)], [3, 3, 2, 3]),
    ]
    health = study.resampling_health(records)
    # rounds: 4/4, 1/4 and 1/(0.5) = 2 of 4
    assert health["effective_share"] == pytest.approx((1 + 0.25 + 0.5) / 3)
    assert health["rounds"] == 2  # the last round drew nothing
    assert health["one_ancestor"] == pytest.approx(1 / 2)
    assert health["lineages"] == pytest.approx((3 + 1) / 2)


def test_every_temperature_is_paired_with_temperature_one_on_the_problems_all_answered(
        study, tmp_path):
    flat = ([0.25] * 4, [0, 1, 2, 3])
    collapsed = ([1.0, 0.0, 0.0, 0.0], [0, 0, 0, 0])
    base = write_run(tmp_path / "base", [
        particle_record(f"p{i}", 4, i < 1, [collapsed], [3, 3, 3, 3]) for i in range(5)])
    # temperature 4 answered four of the five problems, three of them right
    warm = write_run(tmp_path / "warm", [
        particle_record(f"p{i}", 4, i < 3, [flat], [3, 6, 9, 12]) for i in range(4)])
    rows = study.compare(study.read_runs({1.0: base, 4.0: warm}, ["pf"], [4]), ["pf"], [4])
    assert [(r["temperature"], r["count"]) for r in rows] == [(1.0, 4), (4.0, 4)]
    one, four = rows
    assert one["accuracy"]["value"] == pytest.approx(1 / 4)
    assert four["accuracy"]["value"] == pytest.approx(3 / 4)
    assert one["versus_temperature_1"] is None
    assert four["versus_temperature_1"]["value"] == pytest.approx(2 / 4)
    assert (one["one_ancestor"], four["one_ancestor"]) == (1.0, 0.0)
    assert (one["effective_share"], four["effective_share"]) == pytest.approx((0.25, 1.0))
    assert (one["lineages"], four["lineages"]) == (1.0, 4.0)


def test_a_method_or_budget_missing_at_any_temperature_gets_no_row(study, tmp_path):
    base = write_run(tmp_path / "base", [particle_record("p0", 4, True, [], [1])])
    warm = write_run(tmp_path / "warm", [particle_record("p0", 16, True, [], [1])])
    tables = study.read_runs({1.0: base, 4.0: warm}, ["pf"], [4, 16])
    assert study.compare(tables, ["pf"], [4, 16]) == []
