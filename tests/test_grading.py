"""Answer extraction and grading, with the real math-verify. Only the bounds on its time use
stand-ins: a comparison that takes a set minute, and a parse that records what reaches it."""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
import signal
import threading
import time

import pytest

from ttscale.grading import (
    alarm,
    answers_equivalent,
    extract_answer,
    extract_boxed,
    grade,
    grade_solution,
    normalize_answer,
    symbolic,
)

# A worker thread that grades is done in seconds, more on a slow machine; only a hang gets here.
GIVE_UP_S = 300


def _rows(filename: str) -> list[dict]:
    text = (importlib.resources.files("ttscale") / "data" / filename).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{5}$.", "5"),
        ("$\\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt{3}}{2}"),
        (
            "nested \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("escaped braces \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {12}", "12"),
        ("\\boxed 5 is the answer", "5"),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
        (
            "a matrix \\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}",
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        ),
        ("complete \\boxed{3} then cut off \\boxed{\\frac{1}{", "3"),
        ("no box at all: 42", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thus $x = \\boxed{3}$.", "3"),
        ("The answer is \\boxed{4}. The answer is 5.", "4"),  # a box wins over prose
        ("Natalia sold 72 clips.\n#### 72", "72"),
        ("#### 1,450,000", "1,450,000"),
        ("So the answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("The answer is 5. Then some more text.", "5"),
        ("Final Answer: The final answer is $42$. I hope it is correct.", "42"),
        ("**Answer:** 12", "12"),
        ("Answer: (3, 4)\n", "(3, 4)"),
        ("The answer is:\n\n-7", "-7"),
        ("The answer is \\(x = 3\\).", "x = 3"),
        ("We answer: 1. Later the answer is 2.", "2"),  # the last statement wins
        ("I could not finish this problem.", None),
        ("\\boxed{}", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# --------------------------------------------------------------------------------------------
# Normalisation and equivalence
# --------------------------------------------------------------------------------------------

EQUIVALENT = [
    ("25", "025"),  # zero-padded AIME answers
    ("0", "000"),
    ("1,450,000", "1450000"),  # thousands separators
    ("10,\\!080", "10080"),
    ("\\$32,\\!348", "32348"),
    ("\\text{(C)}", "C"),  # multiple choice
    ("\\textbf{(C)}", "(C)"),
    ("\\text{Evelyn}", "Evelyn"),
    ("10\\text{ cm}", "10"),  # units
    ("5 \\text{ inches}", "5"),
    ("5 inches", "5"),
    ("864 \\mbox{ inches}^2", "864"),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
    ("90^\\circ", "90"),  # degrees
    ("90^{\\circ}", "90"),
    ("[-2,7)", "[-2, 7)"),  # intervals
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("x \\in [-2,7]", "[-2,7]"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),  # tuples
    (".35625", "0.35625"),  # decimals
    ("2.50", "2.5"),
    ("5.0", "5"),
    ("\\frac12", "0.5"),  # fractions
    ("\\dfrac{1}{2}", "0.5"),
    ("\\tfrac{1}{2}", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("-\\frac{3}{4}", "-0.75"),
    ("50\\%", "50"),  # percentages
    ("12.5%", "12.5"),
    ("-5", "-5"),  # negative numbers
    ("-0.5", "-\\frac{1}{2}"),
    ("x=5", "5"),  # assignments
    ("x = 5", "x=5"),
    ("1, -2", "-2, 1"),  # solution sets
    ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),  # symbolic
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("\\pi r^2", "r^2 \\pi"),
    (
        "\\begin{pmatrix} 1/2 \\\\ 2 \\end{pmatrix}",
        "\\begin{pmatrix}\\frac{1}{2}\\\\2\\end{pmatrix}",
    ),
    ("$5$.", "5"),
    ("\\boxed{5}", "5"),
]

NOT_EQUIVALENT = [
    ("25", "250"),
    ("25", "0025.1"),
    ("1,450,000", "1450"),
    ("\\text{(C)}", "D"),
    ("\\text{Evelyn}", "Navin"),
    ("\\text{Evelyn}", "\\text{Nylvee}"),  # a name is a word, not a product of letters
    ("10\\text{ cm}", "100"),
    ("90^\\circ", "45"),
    ("[-2,7)", "[-2,7]"),
    ("(-\\infty, 3]", "(-\\infty, 3)"),
    ("(3, \\frac{\\pi}{2})", "(3, \\pi)"),
    ("(1, 2)", "(2, 1)"),
    (".35625", "0.3562"),
    ("\\frac12", "\\frac13"),
    ("1/2", "2"),
    ("50\\%", "5"),
    ("-5", "5"),
    ("x=5", "6"),
    ("1,-2", "1,2"),
    ("1,-2", "1"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"),
    ("3", "3.0001"),
    ("\\sqrt{2}", "2"),
    ("", ""),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_answers(a, b):
    assert answers_equivalent(a, b)
    assert answers_equivalent(b, a)
    assert grade(a, b) and grade(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_different_answers(a, b):
    assert not answers_equivalent(a, b)
    assert not answers_equivalent(b, a)
    assert not grade(a, b) and not grade(b, a)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("025", "25"),
        ("1,450,000", "1450000"),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
        ("\\text{(C)}", "C"),
        ("\\text{Evelyn}", "Evelyn"),
        ("10\\text{ cm}", "10"),
        ("90^\\circ", "90"),
        ("50\\%", "50"),
        (".35625", "0.35625"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("$x = 5$.", "5"),
        ("\\pi r", "\\pi r"),  # a space that ends a control word is kept
        ("(1,200)", "(1,200)"),  # a pair, not a thousands separator
    ],
)
def test_normalize_answer(raw, canonical):
    assert normalize_answer(raw) == canonical


def test_grade_none_prediction_is_wrong():
    assert grade(None, "5") is False
    assert grade_solution("no answer here", "5") == (None, False)


@pytest.mark.parametrize(
    "junk",
    ["\\frac{", "}}}{{", "\\begin{pmatrix", "x" * 5000, "1" * 3000, "\\sqrt{-}", "=", "\\\\"],
)
def test_grading_never_raises(junk):
    assert answers_equivalent(junk, "5") is False
    assert grade(junk, "5") is False
    assert grade("5", junk) is False
    assert isinstance(normalize_answer(junk), str)


def test_grading_off_the_main_thread():
    results: dict[str, object] = {}

    def worker():
        try:
            results["fraction"] = grade("0.75", "\\frac{3}{4}")  # needs math-verify
            results["interval"] = answers_equivalent("(-\\infty, 3]", "(-\\infty,3)")
            results["solution"] = grade_solution("So \\boxed{\\dfrac{7}{8}}.", "0.875")
            results["long"] = grade("1" * 3000, "2")
        except BaseException as exc:  # noqa: BLE001 - reported below
            results["error"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=GIVE_UP_S)
    assert not thread.is_alive()
    assert "error" not in results, results.get("error")
    assert results == {
        "fraction": True,
        "interval": False,
        "solution": ("\\dfrac{7}{8}", True),
        "long": False,
    }


@pytest.fixture
def fresh_caches():
    """Parses and comparisons made with a stand-in are not remembered past the test, nor are
    earlier ones used in it."""
    symbolic._parse.cache_clear()
    symbolic._verify.cache_clear()
    yield
    symbolic._parse.cache_clear()
    symbolic._verify.cache_clear()


def test_costly_answers_are_bounded_off_the_main_thread(monkeypatch, fresh_caches):
    """No alarm can interrupt sympy in a worker thread: answers that could run for minutes are
    compared as strings there, never handed to math-verify."""
    handed: list[str] = []
    _, verify, configs, timeout_error = symbolic._load_math_verify()

    def watched_parse(text, *args, **kwargs):
        handed.append(text)
        return ()  # nothing to compare: what matters is what reached it

    monkeypatch.setattr(symbolic, "_load_math_verify",
                        lambda: (watched_parse, verify, configs, timeout_error))
    results: list[bool] = []
    handed_costly: list[str] = []
    costly = [
        ("10^{10^{10^{11}}}", "7"),
        ("200000000!", "7"),
        ("(x+2)^{1000}", "x^{1000}+2^{1000}"),
        ("\\binom{200000000}{100000000}", "7"),
        ("x" * 1500, "y" * 1500),
    ]

    def worker():
        results.extend(grade(a, b) for a, b in costly)
        results.append(grade("10^{10^{10^{11}}}", "10^{10^{10^{11}}}"))  # same string
        handed_costly.extend(handed)
        grade("0.75", "\\frac{3}{4}")  # a cheap pair does reach it: the watch works

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    thread.join(timeout=GIVE_UP_S)
    assert not thread.is_alive()
    assert results == [False] * len(costly) + [True]
    assert handed_costly == [] and handed


def test_main_thread_timeout(monkeypatch, fresh_caches):
    """In the main thread an alarm stops a comparison that would go on: here one that takes a
    minute, so that the bound shows on a machine of any speed."""
    import math_verify.grader

    compared = []

    def a_minute(*args, **kwargs):
        compared.append(args)
        time.sleep(60)
        return True

    symbolic._load_math_verify()  # imported before the clock starts
    monkeypatch.setattr(math_verify.grader, "sympy_expr_eq", a_minute)
    monkeypatch.setattr(alarm, "MATH_VERIFY_TIMEOUT_S", 1)
    started = time.monotonic()
    assert grade("x+1", "x+2") is False
    assert compared  # the comparison was reached, and cut short
    assert time.monotonic() - started < 30


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timers")
def test_main_thread_grading_keeps_an_outer_alarm():
    """math-verify uses SIGALRM in the main thread; an alarm the caller set (e.g. by
    pytest-timeout) must still be armed afterwards."""
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 300)
        assert grade("0.6", "\\frac{3}{5}")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 200 < remaining <= 300
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


def test_failures_are_logged_at_debug_only(caplog):
    with caplog.at_level(logging.DEBUG, logger="ttscale.grading"):
        assert not grade("\\frac{", "\\begin{pmatrix")
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name == "ttscale.grading")


# --------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------


def test_math500_reference_solutions_grade_correct():
    """Each MATH-500 reference solution, graded against its own reference answer."""
    rows = _rows("math500.jsonl")
    assert len(rows) == 500
    disagreements = []
    for row in rows:
        extracted, correct = grade_solution(row["solution"], row["answer"])
        if not correct:
            disagreements.append(
                f"{row['id']}: extracted {extracted!r} vs reference {row['answer']!r}"
            )
    agreement = 100.0 * (len(rows) - len(disagreements)) / len(rows)
    report = f"MATH-500 agreement {agreement:.1f}% ({len(disagreements)} disagreements)"
    print(report)
    for line in disagreements:
        print("  " + line)
    assert agreement >= 99.0, report + "\n" + "\n".join(disagreements)


def test_gsm8k_reference_answers():
    rows = _rows("gsm8k_test.jsonl")
    assert len(rows) == 1319
    with_commas = 0
    for row in rows:
        answer = row["answer"]
        assert grade(answer, answer), row["id"]
        assert grade_solution(f"So she makes \\boxed{{{answer}}} dollars.", answer) == (
            answer,
            True,
        )
        assert grade_solution(row["solution"], answer) == (answer, True), row["id"]
        if "," in answer:
            with_commas += 1
            plain = answer.replace(",", "")
            assert grade(plain, answer) and grade(answer, plain), row["id"]
            assert answers_equivalent(plain, answer)
            assert not grade(plain + "0", answer)
    assert with_commas == 14


def test_aime24_zero_padded_answers():
    rows = _rows("aime24.jsonl")
    assert len(rows) == 30
    padded = [row["answer"] for row in rows if re.fullmatch(r"0\d+", row["answer"])]
    assert len(padded) == 7
    for answer in padded:
        unpadded = answer.lstrip("0") or "0"
        assert grade(unpadded, answer) and grade(answer, unpadded)
        assert grade_solution(f"The answer is $\\boxed{{{unpadded}}}$.", answer)[1]
        assert not grade(unpadded + "0", answer)
    for row in rows:
        assert grade(str(int(row["answer"])), row["answer"])
