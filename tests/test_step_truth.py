"""Exact step truth on the ladder's problems (:mod:`ttscale.prm_training.step_truth`), and the
exact label method of ``ttscale prm label`` built on it, with a scripted policy:
no model runs here."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ttscale.datasets import Problem, builtin_data_path, load_dataset
from ttscale.errors import ConfigError
from ttscale.prm_training.step_truth import genuine, given_numbers, step_labels

# Ethan has 68 cookies. Ethan loses 36 cookies. Ethan's neighbor has twice as many cookies as
# Ethan. How many cookies does Ethan's neighbor have now?  quantities 32, 64; givens 68, 36, 2
ETHAN = "ladder-test-L2-0001"
# Hana starts with 4 cards. Hana buys 20 more cards. ...  quantities 24; givens 4, 20
HANA = "ladder-test-L1-0001"
# Liam buys 7 albums of stamps. Each album holds 10 stamps. Liam loses 54 stamps. Liam's aunt
# has 6 times as many ... among 8 classmates ... uses 3 ...  quantities 70, 16, 96, 12, 9
LIAM = "ladder-test-L5-0021"


@pytest.fixture(scope="module")
def ladder() -> dict[str, Problem]:
    return {p.id: p for p in load_dataset("ladder", ids=[ETHAN, HANA, LIAM])}


def test_the_problems_are_the_shipped_rows(ladder):
    assert ladder[ETHAN].quantities == ("32", "64") and ladder[ETHAN].answer == "64"
    assert ladder[HANA].quantities == ("24",)
    assert ladder[LIAM].quantities == ("70", "16", "96", "12", "9")


def test_every_reference_solution_is_right_step_by_step_and_givens_match_the_rows():
    rows = {}
    for line in builtin_data_path("ladder").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["id"]] = row
    for problem in load_dataset("ladder"):
        steps = problem.solution.splitlines()
        assert step_labels(problem, steps) == [True] * len(steps), problem.id
        assert genuine(problem, steps, correct=True)
        # the numbers read from the text ("twice" as 2) are the row's givens
        assert given_numbers(problem.problem) == {Fraction(g) for g in rows[problem.id]["givens"]}


def test_right_steps_in_other_words(ladder):
    steps = ["Step 1: Ethan loses 36, so he has 68 - 36 = 32 cookies.",
             "Step 2: The neighbor has twice as many: 2 * 32 = 64 cookies.",
             "So the answer is \\boxed{64}."]
    assert step_labels(ladder[ETHAN], steps) == [True, True, True]
    assert genuine(ladder[ETHAN], steps, correct=True)


def test_wrong_arithmetic_is_wrong(ladder):
    assert step_labels(ladder[ETHAN], ["Step 1: Ethan has 68 - 36 = 22 cookies left."]) == [False]
    assert step_labels(ladder[LIAM], ["Step 1: Liam buys 7 * 10 = 17 stamps."]) == [False]


def test_right_arithmetic_to_a_number_that_is_no_quantity_is_wrong(ladder):
    # the arithmetic holds, but 104 is not a value the problem goes through
    assert step_labels(ladder[ETHAN], ["Step 1: Ethan has 68 + 36 = 104 cookies."]) == [False]
    # a limit of the rule: 96 / 6 is not how the problem goes on, but 16 is one of its
    # quantities (Liam's count after step 2), and values are checked, not their order
    assert step_labels(ladder[LIAM], ["Step 4: Each classmate gets 96 / 6 = 16 stamps."]) == [
        True]


def test_an_invented_step_after_the_answer_is_reached_is_wrong(ladder):
    # computing a given back (24 - 20 = 4) is not progress: 4 is a given, not a quantity
    steps = ["Step 1: Hana has 4 + 20 = 24 cards.", "Step 2: She has 24 - 20 = 4 more cards.",
             "The answer is \\boxed{24}."]
    assert step_labels(ladder[HANA], steps) == [True, False, True]
    assert not genuine(ladder[HANA], steps, correct=True)


def test_a_lucky_answer_through_wrong_steps_is_correct_but_not_genuine(ladder):
    from ttscale.grading import grade_solution

    steps = ["Step 1: Ethan has 68 - 36 = 31 cookies left.",
             "Step 2: Ethan's neighbor has 31 * 2 = 64 cookies.",
             "The answer is \\boxed{64}."]
    _, correct = grade_solution("\n".join(steps), ladder[ETHAN].answer)
    assert correct
    assert step_labels(ladder[ETHAN], steps) == [False, False, True]
    assert not genuine(ladder[ETHAN], steps, correct)
    # the same wrong steps with a wrong answer: neither
    wrong = [*steps[:2], "The answer is \\boxed{62}."]
    assert step_labels(ladder[ETHAN], wrong)[-1] is False
    assert not genuine(ladder[ETHAN], wrong, correct=False)


def test_restatements_of_givens_and_quantities_are_right_and_other_numbers_wrong(ladder):
    problem = ladder[ETHAN]
    assert step_labels(problem, ["Step 1: Ethan has 68 cookies and loses 36 of them.",
                                 "Step 2: The neighbor has 2 times as many as Ethan.",
                                 "Step 3: Now Ethan has 32 cookies.",
                                 "Step 3: Now Ethan has 33 cookies."]) == [True, True, True, False]


def test_prose_without_a_number_is_unlabelled_and_does_not_spoil_genuine(ladder):
    steps = ["Step 1: Let's think about the cookies first.",
             "Step 2: Ethan has 68 - 36 = 32 cookies left.",
             "Step 3: Ethan's neighbor has 32 * 2 = 64 cookies.",
             "The answer is \\boxed{64}."]
    assert step_labels(ladder[ETHAN], steps) == [None, True, True, True]
    assert genuine(ladder[ETHAN], steps, correct=True)


def test_numbers_compare_numerically(ladder):
    problem = ladder[ETHAN]
    assert step_labels(problem, ["Step 1: Ethan has 68 - 36 = 32.0 cookies left.",
                                 "Step 2: Ethan's neighbor has 32.0 * 2 = 64 cookies.",
                                 "The answer is \\boxed{64.0}.",
                                 "The answer is 64 cookies."]) == [True, True, True, True]


def test_the_final_answer_step_is_judged_by_the_answer_and_any_computation_in_it(ladder):
    problem = ladder[HANA]
    assert step_labels(problem, ["Hana has 4 + 20 = 24 cards. The answer is \\boxed{24}.",
                                 "Hana has 4 + 20 = 25 cards. The answer is \\boxed{24}.",
                                 "The answer is \\boxed{25}."]) == [True, False, False]


def test_an_operation_the_checker_cannot_read_is_unlabelled(ladder):
    assert step_labels(ladder[HANA], ["Step 1: Hana has 4 + 20 cards."]) == [None]


def test_a_problem_without_quantities_cannot_be_labelled():
    problem = Problem("p", "What is 3 + 4?", "7", "mine")
    with pytest.raises(ValueError, match="no recorded quantities"):
        step_labels(problem, ["Step 1: 3 + 4 = 7."])


# -- exact labels for training: `ttscale prm label --method exact` ------------------------------
# ladder-train-L2-0001: Priya 65 + 11 = 76, 76 - 64 = 12; L2-0002: Hana 4 * 9 = 36,
# 36 * 4 = 144; L2-0003: Lucas 5 * 12 = 60, 60 + 13 = 73
SCRIPT = {
    "ladder-train-L2-0001": [
        None,  # the reference solution
        "Step 1: Let's add first.\nStep 2: Priya has 65 + 11 = 76 stickers.\n"
        "Step 3: Priya has 76 - 64 = 12 stickers left.\nThe answer is \\boxed{12}.",
        "Step 1: Priya has 65 + 11 = 75 stickers.\nStep 2: Priya has 75 - 64 = 12 stickers "
        "left.\nThe answer is \\boxed{12}.",
    ],
    "ladder-train-L2-0002": [
        "Step 1: Hana buys 4 * 9 = 36 stickers.\nStep 2: Hana's aunt has 36 + 4 = 40 stickers.\n"
        "The answer is \\boxed{40}.",
        None,
        "Step 1: Hana has 4 sheets with 9 stickers each.\nStep 2: Hana buys 4 * 9 = 36 "
        "stickers.\nStep 3: Hana's aunt has 36 * 4 = 144 stickers.\nStep 4: She has 144 - 36 = "
        "108 more.\nThe answer is \\boxed{144}.",
    ],
}
EXPECTED = {  # 1 right, 0 wrong, None unlabelled; (correct, genuine)
    "ladder-train-L2-0001": [([1, 1, 1], True, True), ([None, 1, 1, 1], True, True),
                             ([0, 0, 1], True, False)],
    "ladder-train-L2-0002": [([1, 0, 0], False, False), ([1, 1, 1], True, True),
                             ([1, 1, 1, 0, 1], True, False)],
    "ladder-train-L2-0003": [([1, 1, 1], True, True)] * 3,
}
SELECTION = {"dataset": "ladder_train", "offset": 500, "limit": 3}


def scripted_policy():
    from fakes import ScriptedPolicy

    problems = list(load_dataset("ladder_train", offset=500, limit=3))

    def respond(prefix: str, j: int, stop):
        [problem] = [p for p in problems if p.problem in prefix]
        script = SCRIPT.get(problem.id, [None] * 3)[j]
        return (script or problem.solution) + "\n\nProblem: next", "stop"

    return ScriptedPolicy(respond)


class FakeReader:
    """Hidden states without a model: a few numbers about the tokens up to each position."""

    n_embd = 4
    name = "fake"
    embedded = False
    parameters = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read: list[list[int]] = []

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return [1] * add_bos + [ord(c) for c in text]

    def hidden_states(self, ids, positions):
        self.read.append(list(positions))
        return np.array([[p, sum(ids[:p + 1]) % 101, ids[p - 1] % 7, 1.0] for p in positions],
                        dtype=np.float32)

    def close(self) -> None:
        pass


@pytest.fixture
def exact_labels(tmp_path):
    from ttscale.prm_training.labels import LabelSettings, label_dataset
    from ttscale.prompts import PromptFormat

    policy = scripted_policy()
    outcome = label_dataset(policy, PromptFormat(), tmp_path / "labels", method="exact",
                            settings=LabelSettings(samples=3, max_solution_tokens=96),
                            **SELECTION)
    assert (outcome.labelled, outcome.skipped, outcome.failures) == (3, 0, [])
    # each problem's prompt sampled once (the engine batches them), no rollouts
    assert sum(len(call.prefixes) for call in policy.calls) == 3
    assert all(call.n == 3 for call in policy.calls)
    return tmp_path / "labels"


def _hard(label):
    return None if label is None else int(label["hard"])


def test_exact_labels_mark_each_step_right_or_wrong(exact_labels):
    records = [json.loads(line) for line in
               (exact_labels / "labels.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records) == sorted(EXPECTED)
    for record in records:
        got = [([_hard(label) for label in s["labels"]], s["correct"], s["genuine"])
               for s in record["solutions"]]
        assert got == EXPECTED[record["key"]], record["key"]
        for solution in record["solutions"]:
            assert len(solution["steps"]) == len(solution["labels"])
            for label in solution["labels"]:
                assert label is None or label["soft"] == float(label["hard"])
        assert record["rolled_prefixes"] == 0
    manifest = json.loads((exact_labels / "manifest.json").read_text())
    assert manifest["label_method"] == "exact step labels from the ladder's recorded quantities"
    assert "rollouts" not in manifest["settings"] and manifest["dataset"] == "ladder_train"


def test_exact_labelling_resumes_and_refuses_another_method_in_the_folder(exact_labels):
    from ttscale.prm_training.labels import LabelSettings, label_dataset
    from ttscale.prompts import PromptFormat

    settings = LabelSettings(samples=3, max_solution_tokens=96)
    policy = scripted_policy()
    again = label_dataset(policy, PromptFormat(), exact_labels, method="exact",
                          settings=settings, **SELECTION)
    assert (again.labelled, again.skipped) == (0, 3) and not policy.calls
    assert len((exact_labels / "labels.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ConfigError, match="label_method"):
        label_dataset(policy, PromptFormat(), exact_labels, settings=settings, **SELECTION)


def test_exact_labels_refuse_problems_without_quantities(tmp_path):
    from ttscale.prm_training.labels import LabelSettings, label_dataset
    from ttscale.prompts import PromptFormat

    policy = scripted_policy()
    with pytest.raises(ConfigError, match=r"gsm8k_train.*--dataset ladder_train"):
        label_dataset(policy, PromptFormat(), tmp_path, dataset="gsm8k_train", limit=2,
                      method="exact")
    mixed = tmp_path / "mine.jsonl"
    mixed.write_text(json.dumps({"problem": "1 + 1?", "answer": "2", "quantities": [2]}) + "\n"
                     + json.dumps({"problem": "2 + 2?", "answer": "4"}) + "\n")
    with pytest.raises(ConfigError, match="1 of the 2 selected problems of .*mine"):
        label_dataset(policy, PromptFormat(), tmp_path, dataset=str(mixed), method="exact")
    with pytest.raises(ConfigError, match="--screen"):
        label_dataset(policy, PromptFormat(), tmp_path, method="exact",
                      settings=LabelSettings(samples=2, screen=4), **SELECTION)
    with pytest.raises(ConfigError, match="unknown label method"):
        label_dataset(policy, PromptFormat(), tmp_path, method="oracle", **SELECTION)
    assert not policy.calls and not (tmp_path / "labels.jsonl").exists()


def test_the_cli_refuses_exact_labels_without_quantities_before_loading_a_model(tmp_path):
    from typer.testing import CliRunner

    from ttscale.cli.main import app

    result = CliRunner().invoke(app, ["prm", "label", "--method", "exact", "--dataset",
                                      "gsm8k_train", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "ladder_train" in result.output
    result = CliRunner().invoke(app, ["prm", "label", "--method", "oracle", "--dataset",
                                      "ladder_train", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown label method" in result.output


def test_train_reads_exact_labels_leaving_unlabelled_steps_out(exact_labels, tmp_path):
    from ttscale.prm_training.labels import read_labels
    from ttscale.prm_training.train import step_table

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF fake")
    reader = FakeReader(gguf)
    records = read_labels(exact_labels)
    table = step_table(records, reader)
    hard = [label for r in records for s in r["solutions"] for label in
            (_hard(x) for x in s["labels"]) if label is not None]
    assert len(table) == len(hard) == 29 and table.features.shape == (29, 4)
    assert table.hard.astype(int).tolist() == hard and table.soft.tolist() == hard
    # the unlabelled prose step is still read before the steps after it: every step of every
    # solution had its hidden state computed (30 steps), one row left out
    assert sum(len(p) for p in reader.read) == 30


def test_a_head_trained_on_exact_labels_says_so_on_its_card(exact_labels, tmp_path,
                                                              monkeypatch):
    import ttscale.engines.llama_hidden as llama_hidden
    from ttscale.prm_training.card import head_card
    from ttscale.prm_training.head import FitSettings
    from ttscale.prm_training.train import train_value_head

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF fake")
    monkeypatch.setattr(llama_hidden, "LlamaHiddenStates",
                        lambda model_path=None, n_threads=None: FakeReader(gguf))
    manifest = train_value_head(exact_labels, tmp_path / "head", name="exact-head",
                                validation=0.34, label="hard",
                                settings=FitSettings(hidden=0, epochs=5))
    assert manifest["label_method"]["methods"] == [
        "exact step labels from the ladder's recorded quantities"]
    [source] = manifest["data"]["sources"]
    assert source["dataset"] == "ladder_train" and source["problems"] == 3
    card = head_card(manifest, None)
    assert "exact step labels from the ladder's recorded quantities" in card
    assert "Monte-Carlo" not in card and "any rollout correct" not in card
    assert "| none (exact) |" in card and "AUROC, step right" in card
