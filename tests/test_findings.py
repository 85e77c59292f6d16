"""The demo's per-level tables and the paragraph computed from them."""

from __future__ import annotations

from ttscale.report.findings import (
    describe,
    findings_paragraph,
    level_finding,
    mcnemar_exact,
    tables_by_level,
)


def record(pid: str, level: int, method: str, n: int, correct: bool, flops: float) -> dict:
    return {"problem_id": pid, "level": level, "method": method, "n": n, "correct": correct,
            "pass_at_n": correct, "seconds": 1.0,
            "ledger": {"total_flops": flops, "policy_tokens": {"generated": 10}}}


def level_records(level: int, problems: int, solved: dict[tuple[str, int], int]) -> list[dict]:
    """Each (method, N) solves the first ``solved`` of ``problems`` problems."""
    flops = {"greedy": 1.0, "majority": 4.0, "bon": 4.5, "beam": 5.0, "dvts": 5.0}
    return [record(f"L{level}-{k}", level, method, n, k < count, flops[method] * n)
            for (method, n), count in solved.items() for k in range(problems)]


def test_the_winner_its_margins_and_a_significant_lead():
    records = level_records(1, 40, {("greedy", 1): 4, ("majority", 4): 10, ("bon", 4): 24})
    finding = level_finding(1, records)
    assert (finding.best.method, finding.best.n) == ("bon", 4)
    assert finding.significant
    text = describe(finding)
    assert text.startswith("Level 1 (40 problems): Best-of-N at N = 4 wins with 60%")
    assert "greedy 10%, majority vote 25%" in text and "18× greedy's FLOPs" in text
    assert "is significant (it solves 14 problems that majority vote misses and misses 0" \
        in text


def test_a_lead_within_noise_is_called_so():
    records = level_records(2, 6, {("greedy", 1): 0, ("majority", 4): 1, ("beam", 4): 2})
    text = describe(level_finding(2, records))
    assert "beam search at N = 4 wins with 33%" in text
    assert "within noise on 6 problems (it solves 1 problem that majority vote misses" in text
    # one problem won and none lost is no evidence, however a bootstrap would look
    one = level_records(1, 1, {("majority", 4): 0, ("dvts", 4): 1})
    assert not level_finding(1, one).significant
    assert "Level 1 (1 problem)" in describe(level_finding(1, one))


def test_the_exact_mcnemar_test():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == 2 / 32  # 0.0625: five wins alone are not enough
    assert mcnemar_exact(6, 0) == 2 / 64
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 9) == mcnemar_exact(9, 1) == 2 * 11 / 1024


def test_ties_go_to_the_cheaper_method_and_nothing_solved_is_said_plainly():
    records = level_records(1, 10, {("greedy", 1): 3, ("majority", 4): 3, ("bon", 4): 3})
    finding = level_finding(1, records)
    assert finding.best.method == "greedy"
    assert "did not help here" in describe(finding)
    nothing = level_records(3, 5, {("greedy", 1): 0, ("bon", 4): 0})
    assert describe(level_finding(3, nothing)) == "Level 3 (5 problems): no method solved " \
                                                  "any problem."


def test_one_table_and_one_sentence_per_level_in_level_order():
    records = (level_records(2, 4, {("greedy", 1): 1, ("majority", 4): 2})
               + level_records(1, 4, {("greedy", 1): 2, ("majority", 4): 3}))
    tables = tables_by_level(records, [("greedy", 1), ("majority", 4)])
    assert list(tables) == [1, 2]
    assert [(row.method, row.accuracy) for row in tables[1]] == [("greedy", 0.5),
                                                                 ("majority", 0.75)]
    paragraph = findings_paragraph(records)
    assert paragraph.index("Level 1") < paragraph.index("Level 2")
    assert "majority vote at N = 4 wins with 75%" in paragraph
