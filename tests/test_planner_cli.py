"""`ttscale plan calibrate | evaluate | show | prior` and `ttscale run --method auto` on the
embedded model, at a tiny size: the study's folders and files, resumption, the records'
account of each choice, and the answers to bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ttscale.cli.main import app
from ttscale.records import read_records

runner = CliRunner()

TINY = ("--max-step-tokens", "16", "--max-solution-tokens", "48", "--max-depth", "3",
        "--width", "2", "--threads", "2")


def _run(*args: str):
    result = runner.invoke(app, list(args))
    return result


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    result = _run("plan", "calibrate", "--out", str(out), "--dataset", "gsm8k", "--limit", "4",
                  "--methods", "majority,bon,beam", "--n", "2,4", "--probe", "2",
                  "--difficulty-samples", "2", "--min-problems", "1", *TINY)
    assert result.exit_code == 0, result.output
    return out, result.output


class TestStudy:
    def test_calibration_writes_a_plan_from_its_runs(self, study):
        out, output = study
        plan = json.loads((out / "plan.json").read_text())
        assert plan["source"] == "calibrated" and plan["budgets"] == [2, 4]
        calibration = plan["info"]["calibration_problems"]
        evaluation = plan["info"]["evaluation_problems"]
        assert len(calibration) == len(evaluation) == 2 and not set(calibration) & set(evaluation)
        assert sum(plan["info"]["bin_counts"].values()) == 2
        assert "Liu et al." in plan["rules"]
        records = read_records(out / "runs" / "calibration" / "records.jsonl").records
        keys = {(r["problem_id"], r["method"], r["n"]) for r in records}
        # every method at every budget, pooled methods also at the probe's size (here 2)
        assert keys == {(p, m, n) for p in calibration for m in ("majority", "bon", "beam")
                        for n in (2, 4)}
        difficulty = read_records(out / "runs" / "difficulty" / "records.jsonl").records
        assert {(r["problem_id"], r["n"]) for r in difficulty} == {(p, 2) for p in calibration}
        for cells in plan["choices"].values():
            for budget, cell in cells.items():
                best = cell["candidates"][0]
                assert (cell["method"], cell["n"]) == (best["method"], best["n"])
                assert max(cell["n"], 2) <= int(budget)
                assert all(best["accuracy"] >= c["accuracy"] for c in cell["candidates"])
        assert "calibrated plan for SmolLM2" in output

    def test_calibration_resumes_without_new_work(self, study):
        out, _ = study
        before = (out / "runs" / "calibration" / "records.jsonl").read_bytes()
        plan_before = json.loads((out / "plan.json").read_text())
        result = _run("plan", "calibrate", "--out", str(out), "--dataset", "gsm8k", "--limit",
                      "4", "--methods", "majority,bon,beam", "--n", "2,4", "--probe", "2",
                      "--difficulty-samples", "2", "--min-problems", "1", *TINY)
        assert result.exit_code == 0, result.output
        assert (out / "runs" / "calibration" / "records.jsonl").read_bytes() == before
        again = json.loads((out / "plan.json").read_text())
        assert again["choices"] == plan_before["choices"]

    def test_evaluation_compares_the_planner_with_fixed_methods(self, study):
        out, _ = study
        result = _run("plan", "evaluate", "--plan", str(out / "plan.json"))
        assert result.exit_code == 0, result.output
        evaluation = json.loads((out / "evaluation.json").read_text())
        names = {(row["name"], row["budget"]) for row in evaluation["rows"]}
        for budget in (2, 4):
            assert {(f"bon@{budget}", budget), (f"beam@{budget}", budget),
                    ("planner", budget), ("planner (oracle bins)", budget),
                    ("prior rules", budget)} <= names
        assert evaluation["problems"] == 2
        assert 0.0 <= evaluation["predictor_accuracy"] <= 1.0
        assert "| 4 | planner |" in (out / "evaluation.md").read_text()
        evaluated = {r["problem_id"] for r in
                     read_records(out / "runs" / "evaluation" / "records.jsonl").records}
        assert evaluated == set(json.loads((out / "plan.json").read_text())
                                ["info"]["evaluation_problems"])

    def test_run_auto_follows_the_plan_and_says_why(self, study, tmp_path):
        out, _ = study
        plan = json.loads((out / "plan.json").read_text())
        ids = ",".join(plan["info"]["evaluation_problems"])
        args = ("run", "--method", "auto", "--plan", str(out / "plan.json"), "--budget", "4",
                "--ids", ids, "--out", str(tmp_path / "auto"), *TINY)
        result = _run(*args)
        assert result.exit_code == 0, result.output
        records = read_records(tmp_path / "auto" / "records.jsonl").records
        assert len(records) == 2
        for record in records:
            chosen = record["plan"]
            assert record["method"] == "auto" and record["n"] == 4
            assert chosen["plan"] == "calibrated" and chosen["source"] in ("plan", "prior")
            assert chosen["predicted_bin"] in ("easy", "medium", "hard")
            assert chosen["probe"]["samples"] == 2 and chosen["reason"]
            cell = plan["choices"].get(chosen["predicted_bin"], {}).get("4")
            if chosen["source"] == "plan":
                assert (chosen["method"], chosen["n"]) == (cell["method"], cell["n"])
        again = _run(*args)
        assert again.exit_code == 0 and "0 new record(s)" in again.output

    def test_a_changed_plan_does_not_mix_into_a_run(self, study, tmp_path):
        out, _ = study
        plan = json.loads((out / "plan.json").read_text())
        plan["probe"]["size"] = 1
        other = tmp_path / "other.json"
        other.write_text(json.dumps(plan))
        ids = plan["info"]["evaluation_problems"][0]
        common = ("run", "--method", "auto", "--budget", "2", "--ids", ids, "--out",
                  str(tmp_path / "mixed"), *TINY)
        assert _run(*common, "--plan", str(out / "plan.json")).exit_code == 0
        refused = _run(*common, "--plan", str(other))
        assert refused.exit_code == 2 and "differs in: plan" in refused.output


@pytest.mark.slow
def test_run_auto_without_a_plan_follows_the_prior_rules(tmp_path):
    result = _run("run", "--method", "auto", "--budget", "2", "--limit", "1", "--out",
                  str(tmp_path / "prior"), *TINY)
    assert result.exit_code == 0, result.output
    [record] = read_records(tmp_path / "prior" / "records.jsonl").records
    assert record["plan"]["plan"] == "prior" and record["plan"]["source"] == "prior"
    assert "< 7B class" in record["plan"]["reason"]


def test_prior_command_prints_and_writes_the_rules(tmp_path):
    result = _run("plan", "prior", "--params", "7.6e9", "--out", str(tmp_path / "p.json"))
    assert result.exit_code == 0, result.output
    assert "dvts" in result.output and "Liu et al." in result.output
    shown = _run("plan", "show", str(tmp_path / "p.json"))
    assert shown.exit_code == 0 and "prior plan" in shown.output


@pytest.mark.parametrize(("args", "expected"), [
    (("run", "--method", "auto", "--plan", "/nonexistent/plan.json", "--limit", "1"),
     "no plan file at /nonexistent/plan.json"),
    (("run", "--method", "bon", "--plan", "/nonexistent/plan.json"),
     "--plan is read by --method auto only"),
    (("run", "--method", "auto", "--prm", "none"), "method auto chooses among scored"),
    (("run", "--method", "bon,beam", "--method-n", "dvts=4"), "budgets were given for dvts"),
    (("run", "--method", "beam", "--method-n", "beam"), "--method-n takes METHOD=N"),
    (("plan", "calibrate", "--out", "/tmp/x", "--methods", "beam,auto"),
     "drop 'auto' from --methods"),
    (("plan", "calibrate", "--out", "/tmp/x", "--methods", "beam"), "needs bon or majority"),
    (("plan", "calibrate", "--out", "/tmp/x", "--bins", "tertiles"), "unknown difficulty bins"),
    (("plan", "calibrate", "--out", "/tmp/x", "--calibration-fraction", "1"),
     "between 0 and 1"),
    (("plan", "prior", "--params", "0"), "--params"),
])
def test_bad_input_gets_one_clear_line(args, expected):
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_evaluating_a_prior_plan_is_refused(tmp_path):
    _run("plan", "prior", "--params", "1e9", "--out", str(tmp_path / "prior.json"))
    result = _run("plan", "evaluate", "--plan", str(tmp_path / "prior.json"), "--replay-only")
    assert result.exit_code == 2 and "not a calibrated plan" in result.output


@pytest.mark.slow
def test_solve_auto_reports_the_planners_choice():
    result = _run("solve", "Tom has 3 apples and buys 4 more. How many apples does he have?",
                  "--method", "auto", "--budget", "4", "--width", "2", "--max-step-tokens", "16",
                  "--max-depth", "3", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["method"] == "auto" and answer["plan"]["source"] == "prior"
    assert answer["plan"]["method"] in ("bon", "beam") and answer["plan"]["n"] <= 4
    assert answer["ledger"]["policy_tokens"]["generated"] > 0
