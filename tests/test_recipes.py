"""Recipe files (`--config FILE`): every shipped recipe is valid, a bad key or value is one clear
line naming the key and the file, options on the command line override the file, the recipe is
left in the run folder, and `ttscale report` sets its expected figures beside the measured
ones."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from fakes import ScriptedPolicy
from ttscale.cli.main import app
from ttscale.cli.recipe import RecipeError, command_fields, read_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))
RUN_FIELDS = command_fields(get_command(app).commands["run"])

runner = CliRunner()


def _write(folder: Path, text: str, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_recipes_are_shipped():
    assert (ROOT / "recipes" / "smollm2-ladder.yaml") in RECIPES
    assert len([path for path in RECIPES if path.parent.name == "paper"]) >= 10


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_shipped_recipe_validates(path: Path):
    recipe = read_recipe(path, RUN_FIELDS)
    assert recipe.description and recipe.source
    methods = recipe.options["method"].split(",")
    budgets = [int(n) for n in recipe.options["n"].split(",")]
    for figure in recipe.expected:  # each expected figure is one the recipe's run measures
        assert figure["dataset"] == recipe.options["dataset"]
        assert figure["method"] in methods and figure["n"] in budgets
        assert 0 <= figure["accuracy"] <= 1
    # and through the command line: --config is read before --help answers
    result = runner.invoke(app, ["run", "--config", str(path), "--help"])
    assert result.exit_code == 0, result.output


def test_the_paper_recipes_expect_table_3():
    recipe = read_recipe(ROOT / "recipes/paper/llama-3.2-3b-instruct-math500.yaml", RUN_FIELDS)
    assert recipe.options["engine"] == "openai"
    assert recipe.options["model"] == "meta-llama/Llama-3.2-3B-Instruct"
    assert recipe.options["prm"].startswith("http://") and recipe.options["prm_format"]
    assert recipe.expected == [{"dataset": "math500", "method": "auto", "n": 256,
                                "accuracy": 0.756, "note": recipe.expected[0]["note"]}]
    assert "2502.06703" in recipe.source and "Table 3" in recipe.source


def test_lists_mappings_and_comma_text_become_the_options_text(tmp_path):
    path = _write(tmp_path, "method: [bon, beam]\nn: 4,16\nmethod_n: {beam: [4]}\n"
                            "levels: [1, 2]\nprm_params: 7.0e9\nray: true\n")
    options = read_recipe(path, RUN_FIELDS).options
    assert options == {"method": "bon,beam", "n": "4,16", "method_n": ["beam=4"],
                       "levels": "1,2", "prm_params": 7e9, "ray": True}


@pytest.mark.parametrize(("text", "expected"), [
    ("temprature: 0.5\n", "unknown key 'temprature' (did you mean 'temperature'?)"),
    ("n: four\n", "key 'n': expected integers, got 'four'"),
    ("n: [4, x]\n", "key 'n': expected integers, got [4, 'x']"),
    ("max_depth: deep\n", "key 'max_depth': expected an integer, got 'deep'"),
    ("ray: maybe\n", "key 'ray': expected true or false, got 'maybe'"),
    ("method_n: [[beam, 4]]\n", "key 'method_n': expected a mapping of methods to budgets"),
    ("expected:\n  - {dataset: math500, method: bon, n: 4, accuracy: 75.6}\n",
     "key 'expected[1].accuracy': give a fraction from 0 to 1 (0.756) or a percent ('75.6%')"),
    ("expected:\n  - {dataset: math500, method: bon, accuracy: 0.5}\n",
     "key 'expected[1].n': Field required"),
    ("- n: 4\n", "a recipe is a mapping of option names to values"),
    ("n: [4\n", "not valid YAML at line"),
])
def test_a_bad_recipe_is_one_clear_line_naming_the_key_and_the_file(tmp_path, text, expected):
    path = _write(tmp_path, text)
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: " in result.output and expected in result.output
    assert "Traceback" not in result.output


def test_a_missing_recipe_file(tmp_path):
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "none.yaml: no such recipe file" in result.output
    with pytest.raises(RecipeError, match="no such recipe file"):
        read_recipe(tmp_path / "none.yaml", RUN_FIELDS)


def test_every_command_with_config_checks_against_its_own_options(tmp_path):
    path = _write(tmp_path, "max_running: 2\n")  # a server option, not a run option
    assert "unknown key 'max_running'" in runner.invoke(
        app, ["run", "--config", str(path)]).output
    assert runner.invoke(app, ["serve", "--config", str(path), "--help"]).exit_code == 0
    calibration = _write(tmp_path, "methods: [bon]\nprobe: 0\n", "calibration.yaml")
    result = runner.invoke(app, ["plan", "calibrate", "--config", str(calibration), "--out",
                                 str(tmp_path / "study")])
    assert result.exit_code == 2 and "--probe" in result.output  # the file's value was used


RECIPE = """\
description: a scripted study
source: the test suite
dataset: gsm8k
limit: 1
method: [greedy, majority]
n: [2]
seed: 5
max_depth: 3
max_step_tokens: 16
n_ctx: 4096
expected:
  - {dataset: gsm8k, method: majority, n: 2, accuracy: "50%", note: made up}
"""


@pytest.fixture()
def scripted_engine(monkeypatch):
    """The engine `ttscale run` loads is a scripted policy; the specs it was asked for are
    kept."""
    import ttscale.engines

    specs = []

    def load_policy(spec):
        specs.append(spec)
        return ScriptedPolicy(lambda prefix, j, stop: ("The answer is \\boxed{72}.", "eos"))

    monkeypatch.setattr(ttscale.engines, "load_policy", load_policy)
    return specs


def test_options_on_the_command_line_override_the_file(tmp_path, scripted_engine):
    path = _write(tmp_path, RECIPE)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--config", str(path), "--seed", "9", "--n-ctx", "2048",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    settings = manifest["identity"]["settings"]
    assert settings["seed"] == 9  # the command line's
    assert settings["max_depth"] == 3 and settings["max_step_tokens"] == 16  # the file's
    assert manifest["methods"] == ["greedy", "majority"] and manifest["budgets"] == [2]
    assert manifest["dataset_selection"]["limit"] == 1
    assert [spec.n_ctx for spec in scripted_engine] == [2048]


def test_the_recipe_lands_in_the_run_folder(tmp_path, scripted_engine):
    path = _write(tmp_path, RECIPE)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["name"] == "study" and recipe["path"] == str(path.resolve())
    assert (recipe["description"], recipe["source"]) == ("a scripted study", "the test suite")
    assert recipe["expected"] == [{"dataset": "gsm8k", "method": "majority", "n": 2,
                                   "accuracy": 0.5, "note": "made up"}]
    assert recipe["options"]["seed"] == 5
    # a run without --config leaves none
    plain = tmp_path / "plain"
    assert runner.invoke(app, ["run", "--limit", "1", "--method", "greedy", "--out",
                               str(plain)]).exit_code == 0
    assert not (plain / "recipe.json").exists()


def _run_with_records(folder: Path, outcomes: list[bool], recipe: dict | None) -> Path:
    folder.mkdir(parents=True)
    manifest = {"identity": {"dataset": "math500", "scorer": "confidence",
                             "policy": {"name": "small", "parameters": 10**9}},
                "model": {"name": "small", "parameters": 10**9}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    ledger = {"policy_parameters": 10**9, "scorer_parameters": 0, "policy_calls": 1,
              "scorer_calls": 0, "policy_flops": 1e9, "scorer_flops": 0.0, "total_flops": 1e9,
              "policy_tokens": {"prompt": 1, "cached_prompt": 0, "generated": 1},
              "scorer_tokens": {"prompt": 0, "cached_prompt": 0, "generated": 0}}
    records = [{"key": f"p{k}|bon|4", "problem_id": f"p{k}", "dataset": "math500",
                "level": None, "method": "bon", "n": 4, "correct": correct,
                "pass_at_n": correct, "answer": "1", "reference": "1", "candidates": [],
                "tree": [], "ledger": ledger, "by_aggregation": {}, "scorer": "confidence",
                "aggregation": {"step": "last", "answer": "prm_vote"}}
               for k, correct in enumerate(outcomes)]
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    if recipe is not None:
        (folder / "recipe.json").write_text(json.dumps(recipe))
    return folder


def test_the_report_sets_the_expected_figure_beside_the_measured_one(tmp_path):
    recipe = {"name": "paper-row", "path": "recipes/x.yaml", "description": "d",
              "source": "Liu et al. 2025, Table 3", "options": {},
              "expected": [{"dataset": "math500", "method": "bon", "n": 4, "accuracy": 0.756},
                           {"dataset": "math500", "method": "beam", "n": 4, "accuracy": 0.8}]}
    run = _run_with_records(tmp_path / "row", [True, True, True, False], recipe)
    output = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(run), "-o", str(output), "--format", "none"])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "report-files" / "expected.md").read_text()
    assert "| row | math500 | bon | 4 | 75.6% | 75.0% |" in table
    assert "| 4 |" in table.split("| bon |")[1]  # four problems measured
    assert "| row | math500 | beam | 4 | 80.0% | — | — | — | 0 |" in table  # none measured
    assert "recipe paper-row (Liu et al. 2025, Table 3)" in table
    csv_rows = (tmp_path / "report-files" / "expected.csv").read_text().splitlines()
    assert csv_rows[1].startswith("row,math500,bon,4,0.756,0.75,")
    page = html.unescape(output.read_text())
    assert "Expected (the recipe's source) against measured accuracy" in page


def test_a_report_without_recipes_has_no_expected_table(tmp_path):
    run = _run_with_records(tmp_path / "plain", [True, False], None)
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html"),
                                 "--format", "none"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "r-files" / "expected.md").exists()
