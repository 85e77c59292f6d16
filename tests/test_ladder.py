"""The difficulty ladder: generated problems, the shipped splits, `ttscale ladder`."""

from __future__ import annotations

import json
import random
import re
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from ttscale.cli.main import app
from ttscale.datasets import TRAIN_ONLY, builtin_data_path, ladder, load_dataset
from ttscale.errors import ConfigError
from ttscale.rewards.arithmetic import evaluate

NUMBER_WORDS = {"twice": 2}


def numbers_in(text: str) -> list[int]:
    found = [int(x) for x in re.findall(r"\d+", text)]
    words = text.split()
    return found + [value for word, value in NUMBER_WORDS.items()
                    for _ in range(words.count(word))]


@pytest.mark.parametrize("level", range(1, ladder.MAX_LEVEL + 1))
def test_every_quantity_follows_from_the_text_and_the_quantities_before_it(level):
    rng = random.Random(level)
    for index in range(60):
        problem = ladder.generate_problem(level, rng, f"p{index}")
        assert problem.level == level == len(problem.quantities)
        known = set(problem.givens)
        assert sorted(problem.givens) == sorted(numbers_in(problem.problem))
        for quantity in problem.quantities:
            operands = [int(x) for x in re.findall(r"\d+", quantity.expression)]
            assert set(operands) <= known, (problem.problem, quantity)
            assert evaluate(quantity.expression) == Fraction(quantity.value)
            assert 0 < quantity.value <= ladder.MAX_VALUE
            known.add(quantity.value)
        values = [q.value for q in problem.quantities]
        assert len(set(values)) == len(values)  # a computed number names one quantity
        assert not set(values) & set(problem.givens)
        assert problem.answer == str(values[-1])
        assert problem.problem.endswith("?")


def test_the_reference_solution_computes_each_quantity_in_order_and_boxes_the_answer():
    problem = ladder.generate_problem(3, random.Random(7), "p")
    lines = problem.solution.splitlines()
    assert len(lines) == 4
    for line, quantity in zip(lines, problem.quantities, strict=False):
        assert f"{quantity.expression} = {quantity.value}" in line
    assert lines[-1] == f"The answer is \\boxed{{{problem.answer}}}."


def test_generation_is_a_function_of_the_seed():
    first = ladder.generate([1, 2, 3], 20, seed=11)
    assert [p.to_row() for p in first] == [p.to_row() for p in ladder.generate([1, 2, 3], 20,
                                                                              seed=11)]
    other = ladder.generate([1, 2, 3], 20, seed=12)
    assert [p.problem for p in first] != [p.problem for p in other]
    assert len({p.problem for p in first}) == 60
    assert {p.level for p in first} == {1, 2, 3}


def test_the_templates_vary_names_items_and_operations():
    problems = ladder.generate([1, 2, 3], 100, seed=3)
    assert len({p.operations[0] for p in problems if p.level == 1}) == 4
    first_words = {p.problem.split()[0] for p in problems}
    assert len(first_words) >= 10
    items = {item for item, _, _ in ladder.ITEMS if any(item in p.problem for p in problems)}
    assert len(items) >= 10


def test_the_shipped_splits_are_the_generator_output_and_do_not_overlap():
    splits = ladder.shipped_splits()
    for name, problems in splits.items():
        shipped = builtin_data_path(name).read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in shipped] == [p.to_row() for p in problems]
    test_texts = {p.problem for p in splits["ladder_test"]}
    assert not test_texts & {p.problem for p in splits["ladder_train"]}


def test_the_ladder_datasets_load_with_levels_and_quantities():
    test = load_dataset("ladder")
    assert len(test) == 600 and "ladder_train" in TRAIN_ONLY and "ladder" not in TRAIN_ONLY
    level_two = load_dataset("ladder_test", levels=[2])
    assert len(level_two) == 100 and {p.level for p in level_two} == {2}
    problem = level_two.problems[0]
    assert problem.dataset == "ladder" and len(problem.quantities) == 2
    assert problem.quantities[-1] == problem.answer


def test_parse_levels_reads_ranges_and_lists_and_refuses_the_rest():
    assert ladder.parse_levels("1-3") == (1, 2, 3)
    assert ladder.parse_levels("2, 5,2") == (2, 5)
    for bad in ("", "a", "0-2", f"1-{ladder.MAX_LEVEL + 1}"):
        with pytest.raises(ConfigError):
            ladder.parse_levels(bad)
    with pytest.raises(ConfigError, match="out of range"):
        ladder.generate_problem(0, random.Random(0), "p")


def test_the_command_writes_a_dataset_apart_from_the_test_split(tmp_path):
    out = tmp_path / "more.jsonl"
    result = CliRunner().invoke(app, ["ladder", str(out), "--levels", "1,2", "--per-level",
                                      "40", "--seed", str(ladder.SHIPPED_SEEDS["ladder_test"])])
    assert result.exit_code == 0, result.output
    assert "wrote 80 problems" in result.output
    written = load_dataset(str(out))
    assert len(written) == 80 and {p.level for p in written} == {1, 2}
    # the test split's own seed: its problems would come out again, but are left out
    test_texts = {p.problem for p in load_dataset("ladder")}
    assert not test_texts & {p.problem for p in written}
    refused = CliRunner().invoke(app, ["ladder", str(out), "--levels", "9"])
    assert refused.exit_code != 0 and "out of range" in refused.output


def test_quantities_in_a_user_file_are_read_and_bad_ones_reported(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"problem": "a", "answer": 3, "quantities": [2, {"value": 3}]},
            {"problem": "b", "answer": 1, "quantities": "3"},
            {"problem": "c", "answer": 1, "quantities": [[1]]}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    dataset = load_dataset(str(path))
    assert [p.quantities for p in dataset] == [("2", "3")]
    assert [row.line for row in dataset.skipped] == [2, 3]
    assert "quantities" in dataset.skipped[0].reason


@pytest.mark.parametrize(("args", "message"), [
    (["--levels", "7"], "test split has levels 1-6"),
    (["--levels", "1,2", "--per-level", "3,4,5"], "one per level (2)"),
    (["--per-level", "101"], "from 1 to 100"),
    (["--per-level", "0"], "from 1 to 100"),
])
def test_the_demo_refuses_problems_the_test_split_does_not_have(args, message, tmp_path):
    result = CliRunner().invoke(app, ["demo", *args, "--out", str(tmp_path / "demo")])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "demo").exists()  # refused before any model loads
