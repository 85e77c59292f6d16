"""`ttscale demo` and `ttscale solve`, for real on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ttscale.records import read_records

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
# The demo takes minutes here (solve, less) and several times that on a slow, busy machine:
# the limit only stops a command that would never end.
COMMAND_LIMIT_S = 1800


@pytest.mark.slow
@pytest.mark.timeout(2400)  # past COMMAND_LIMIT_S: the demo's own limit fires first
def test_demo_prints_a_table_per_level_and_what_they_show(tmp_path):
    from ttscale.report.findings import findings_paragraph

    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "ttscale.cli.main", "demo", "--levels", "1,2",
                             "--per-level", "1", "--n", "4", "--tree-n", "4", "--out", str(out)],
                            env=ENV, capture_output=True, text=True, timeout=COMMAND_LIMIT_S)
    assert result.returncode == 0, result.stderr
    records = read_records(out / "records.jsonl").records
    assert sorted({r["method"] for r in records}) == ["beam", "bon", "dvts", "greedy",
                                                       "majority"]
    assert len(records) == 2 * 5
    assert {r["problem_id"] for r in records} == {"ladder-test-L1-0001", "ladder-test-L2-0001"}
    # the verified searches use the grounded checker, as the verifier benchmark chose
    assert {r["scorer"] for r in records if r["method"] in ("bon", "beam", "dvts")} == {
        "grounded"}
    stdout = " ".join(result.stdout.split())  # rich wraps long lines
    assert "ladder level 1: 1 operation" in stdout and "ladder level 2: 2 operations" in stdout
    # the printed paragraph is the one the records give
    assert findings_paragraph(records) in stdout
    # each level's table holds that level's accuracies
    for level in (1, 2):
        table = result.stdout.split(f"ladder level {level}:")[1]
        for method in ("greedy", "beam"):
            row = next(r for r in records if r["method"] == method and r["level"] == level)
            line = next(line for line in table.splitlines() if f"│ {method} " in line)
            assert f"{float(row['correct']):.1%}" in line
    # and the run's report beside it, with the same five searches in its viewer
    assert f"report: {out / 'report.html'}" in result.stdout
    html = (out / "report.html").read_text()
    assert html.count('type="application/x-ttscale-problem"') == 2
    assert '"searches": ["greedy@1", "majority@4", "bon@4", "beam@4", "dvts@4"]' in html
    assert (out / "report-files" / "accuracy_vs_flops.png").stat().st_size > 10_000


@pytest.mark.slow
def test_solve_json_gives_answer_and_steps():
    result = subprocess.run(
        [sys.executable, "-m", "ttscale.cli.main", "solve", "Tom has 3 boxes with 8 pencils in "
         "each box. He gives 5 pencils away. How many pencils does he have now?",
         "--method", "bon", "--n", "4", "--max-step-tokens", "48", "--json"],
        env=ENV, capture_output=True, text=True, timeout=COMMAND_LIMIT_S)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "bon" and data["n"] == 4 and data["candidates"] == 4
    assert data["steps"], data
    assert data["ledger"]["policy_tokens"]["generated"] > 0
    if data["answer"] is not None:
        assert data["answer"] in data["steps"][-1]


@pytest.mark.slow
def test_python_api_solve_returns_the_chosen_solution():
    import ttscale
    from ttscale.engines.llama_cpp import LlamaCppEngine
    from ttscale.settings import SearchSettings

    engine = LlamaCppEngine(n_ctx=4096)
    settings = SearchSettings(width=2, max_step_tokens=40, max_solution_tokens=120, max_depth=4)
    result = ttscale.solve("Sara reads 10 pages a day. How many pages does she read in 3 days?",
                           method="beam", n=4, engine=engine, settings=settings)
    assert result.method == "beam" and result.n == 4
    assert 1 <= len(result.steps) <= 4
    assert result.score is not None and 0.0 <= result.score <= 1.0
    assert result.ledger.policy_calls >= 1
    if result.answer is not None:
        assert result.answer in result.steps[-1]
    with pytest.raises(ValueError, match="empty"):
        ttscale.solve("  ", engine=engine)
