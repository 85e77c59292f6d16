"""Built-in datasets and user JSONL files."""

from __future__ import annotations

import importlib.resources
import json
import logging
import random

import pytest

from ttscale.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    Problem,
    SkippedRow,
    load_dataset,
)
from ttscale.errors import ConfigError, DatasetError


@pytest.mark.parametrize(
    ("name", "dataset", "rows"),
    [
        ("math500", "math500", 500),
        ("aime24", "aime24", 30),
        ("gsm8k", "gsm8k", 1319),
        ("gsm8k_test", "gsm8k", 1319),
        ("gsm8k_train", "gsm8k_train", 7473),
    ],
)
def test_builtin_datasets_load(name, dataset, rows):
    data = load_dataset(name)
    assert isinstance(data, Dataset)
    assert data.name == dataset
    assert data.source == f"builtin:{dataset}"
    assert len(data.problems) == len(data) == rows
    assert data.skipped == ()
    assert len({p.id for p in data.problems}) == rows
    for problem in data.problems:
        assert isinstance(problem, Problem)
        assert problem.dataset == dataset
        assert problem.problem.strip() and problem.answer.strip()
        assert isinstance(problem.answer, str)
        assert problem.solution


def test_builtin_fields():
    math500 = load_dataset("math500")
    first = math500.problems[0]
    assert first.id == "test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.level == 2 and first.subject == "Precalculus"
    assert {p.level for p in math500} == {1, 2, 3, 4, 5}
    assert len({p.subject for p in math500}) == 7

    aime = load_dataset("aime24")
    assert aime.problems[0].id == "2024-AIME-I-01"
    assert all(p.level is None and p.subject is None for p in aime)
    assert sum(p.answer.startswith("0") for p in aime) == 7

    gsm8k = load_dataset("gsm8k")
    assert gsm8k.problems[0].id == "gsm8k-test-0000"
    assert gsm8k.problems[0].answer == "18"
    assert sum("," in p.answer for p in gsm8k) == 14


def test_builtin_files_are_package_data():
    data = importlib.resources.files("ttscale") / "data"
    for filename in set(BUILTIN_DATASETS.values()) | {"README.md", "LICENSES.md"}:
        assert (data / filename).is_file(), filename


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_only_the_training_split_is_warned_about_in_runs_and_given_to_labels(name, caplog):
    # results on a training split must not pass for test results, and PRM labels must never
    # come from a test set: both rest on telling the splits apart
    from ttscale.prm_training.labels import check_training_split
    from ttscale.run.runner import DatasetSelection

    with caplog.at_level(logging.WARNING, logger="ttscale.run.runner"):
        DatasetSelection(name, limit=1).load()
    warned = "is a training split" in caplog.text
    if name in ("gsm8k_train", "ladder_train"):
        assert warned
        check_training_split(name)
    else:
        assert not warned
        with pytest.raises(ConfigError, match="is a test set"):
            check_training_split(name)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def test_ids_filter_keeps_dataset_order():
    ids = ["2024-AIME-II-03", "2024-AIME-I-05"]
    data = load_dataset("aime24", ids=ids)
    assert [p.id for p in data] == ["2024-AIME-I-05", "2024-AIME-II-03"]


def test_unknown_ids_are_listed():
    with pytest.raises(DatasetError) as info:
        load_dataset("aime24", ids=["2024-AIME-I-01", "nope-1", "nope-2"])
    message = str(info.value)
    assert "'nope-1'" in message and "'nope-2'" in message
    assert "aime24" in message
    assert "2024-AIME-I-01'" not in message.split("look like")[0]


def test_levels_filter():
    data = load_dataset("math500", levels=[1, 5])
    assert len(data) > 0
    assert {p.level for p in data} == {1, 5}
    full = load_dataset("math500")
    assert len(data) == sum(p.level in (1, 5) for p in full)
    with pytest.raises(DatasetError, match="level"):
        load_dataset("gsm8k", levels=[1])


def test_limit_offset():
    full = load_dataset("math500")
    assert load_dataset("math500", limit=3).problems == full.problems[:3]
    assert load_dataset("math500", offset=10, limit=5).problems == full.problems[10:15]
    assert len(load_dataset("aime24", limit=1000)) == 30
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="limit"):
            load_dataset("math500", limit=bad)
    with pytest.raises(ConfigError, match="offset"):
        load_dataset("aime24", offset=30)
    with pytest.raises(ConfigError, match="offset"):
        load_dataset("aime24", offset=-1)


def test_seeded_shuffle_is_deterministic():
    plain = [p.id for p in load_dataset("math500", limit=20)]
    first = [p.id for p in load_dataset("math500", seed=7, limit=20)]
    again = [p.id for p in load_dataset("math500", seed=7, limit=20)]
    other = [p.id for p in load_dataset("math500", seed=8, limit=20)]
    assert first == again
    assert first != plain
    assert first != other
    full = load_dataset("math500", seed=7)
    assert sorted(p.id for p in full) == sorted(p.id for p in load_dataset("math500"))


def test_filters_apply_in_order():
    """ids, then levels, then the seeded shuffle, then offset/limit."""
    level3 = [p for p in load_dataset("math500") if p.level == 3]
    ids = [p.id for p in level3[:40]] + [load_dataset("math500", levels=[1]).problems[0].id]
    data = load_dataset("math500", ids=ids, levels=[3], seed=1, offset=2, limit=5)
    expected = [p.id for p in level3[:40]]
    random.Random(1).shuffle(expected)
    assert [p.id for p in data] == expected[2:7]


# --------------------------------------------------------------------------------------------
# User files
# --------------------------------------------------------------------------------------------


def _write(path, lines, trailing_newline=True):
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    path.write_text(text, encoding="utf-8")
    return path


def test_user_file(tmp_path):
    path = _write(
        tmp_path / "mine.jsonl",
        [
            json.dumps({"problem": "1+1?", "answer": "2"}),
            json.dumps({"id": "q2", "problem": "2+2?", "answer": 4, "level": 1}),
            "",
            json.dumps({"problem": "half?", "answer": 0.5, "subject": "Algebra", "solution": "."}),
        ],
    )
    data = load_dataset(str(path))
    assert data.name == "mine" and data.source == str(path)
    assert data.skipped == ()
    assert [p.id for p in data] == ["mine-1", "q2", "mine-4"]
    assert [p.answer for p in data] == ["2", "4", "0.5"]
    assert all(p.dataset == "mine" for p in data)
    assert data.problems[1].level == 1
    assert data.problems[2].subject == "Algebra" and data.problems[2].solution == "."


def test_user_file_with_malformed_lines(tmp_path, caplog):
    path = _write(
        tmp_path / "messy.jsonl",
        [
            json.dumps({"id": "a", "problem": "p1", "answer": "1"}),
            '{"id": "b", "problem": "p2", "answer": ',  # 2: bad JSON
            json.dumps({"id": "c", "problem": "p3"}),  # 3: missing answer
            json.dumps(["not", "an", "object"]),  # 4
            json.dumps({"id": "d", "question": "p5", "answer": "5"}),  # 5: wrong field name
            json.dumps({"id": "e", "problem": "p6", "answer": ""}),  # 6: empty answer
            json.dumps({"id": "f", "problem": 7, "answer": "7"}),  # 7: wrong type
            json.dumps({"id": "a", "problem": "p8", "answer": "8"}),  # 8: duplicate id
            json.dumps({"id": "g", "problem": "p9", "answer": "9"}),
            '{"id": "h", "problem": "p10", "ans',  # 10: half-written, no newline
        ],
        trailing_newline=False,
    )
    with caplog.at_level(logging.WARNING, logger="ttscale.datasets"):
        data = load_dataset(str(path))
    assert [p.id for p in data] == ["a", "g"]
    assert all(isinstance(s, SkippedRow) for s in data.skipped)
    reasons = {s.line: s.reason for s in data.skipped}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "invalid JSON" in reasons[2]
    assert "missing 'answer'" in reasons[3]
    assert "not a JSON object" in reasons[4]
    assert "missing 'problem'" in reasons[5] and "question" in reasons[5]
    assert "'answer' is empty" in reasons[6]
    assert "'problem' is int" in reasons[7]
    assert "duplicate id 'a'" in reasons[8] and "line 1" in reasons[8]
    assert "incomplete last line" in reasons[10]
    logged = [r.getMessage() for r in caplog.records if r.name == "ttscale.datasets"]
    for line in reasons:
        assert any(f"line {line} skipped" in m for m in logged), line


def test_many_malformed_lines_are_summarised(tmp_path, caplog):
    lines = [json.dumps({"problem": "p", "answer": "1"})] + ["{bad"] * 25
    path = _write(tmp_path / "many.jsonl", lines)
    with caplog.at_level(logging.WARNING, logger="ttscale.datasets"):
        data = load_dataset(str(path))
    assert len(data) == 1 and len(data.skipped) == 25
    logged = [r.getMessage() for r in caplog.records if r.name == "ttscale.datasets"]
    assert len(logged) <= 11
    assert "15 more malformed lines" in logged[-1]


def test_all_rows_bad(tmp_path):
    path = _write(tmp_path / "bad.jsonl", ["{bad", json.dumps({"question": "q", "answer": "1"})])
    with pytest.raises(DatasetError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert "no usable rows" in message and "2 lines" in message and "line 1" in message


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_unknown_name_message():
    with pytest.raises(DatasetError) as info:
        load_dataset("math50")
    message = str(info.value)
    assert "unknown dataset 'math50'" in message
    assert "Did you mean 'math500'?" in message
    assert "aime24" in message and "gsm8k" in message
    assert "or give a path to a JSONL file with 'problem' and 'answer' fields" in message


def test_missing_file_message(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(DatasetError) as info:
        load_dataset(str(missing))
    assert str(info.value) == f"dataset file not found: {missing}"


def test_directory_and_empty_file(tmp_path):
    with pytest.raises(DatasetError, match="is a directory"):
        load_dataset(str(tmp_path))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(str(empty))
