"""`ttscale demo` and `ttscale solve`, for real on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ttscale.records import read_records

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}


@pytest.mark.slow
def test_demo_prints_the_table_and_saves_a_run(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "ttscale.cli", "demo", "--limit", "2",
                             "--out", str(out)], env=ENV, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    for method in ("greedy", "majority", "bon", "beam", "dvts"):
        assert f"│ {method}" in result.stdout
    records = read_records(out / "records.jsonl").records
    assert sorted({r["method"] for r in records}) == ["beam", "bon", "dvts", "greedy",
                                                       "majority"]
    assert len(records) == 2 * 5
    # the printed accuracies are the records' accuracies
    for method in ("greedy", "beam"):
        rows = [r for r in records if r["method"] == method]
        accuracy = sum(r["correct"] for r in rows) / len(rows)
        line = next(line for line in result.stdout.splitlines() if f"│ {method} " in line)
        assert f"{accuracy:.1%}" in line


def test_solve_json_gives_answer_and_steps():
    result = subprocess.run(
        [sys.executable, "-m", "ttscale.cli", "solve", "Tom has 3 boxes with 8 pencils in "
         "each box. He gives 5 pencils away. How many pencils does he have now?",
         "--method", "bon", "--n", "4", "--max-step-tokens", "48", "--json"],
        env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "bon" and data["n"] == 4 and data["candidates"] == 4
    assert data["steps"], data
    assert data["ledger"]["policy_tokens"]["generated"] > 0
    if data["answer"] is not None:
        assert data["answer"] in data["steps"][-1]
