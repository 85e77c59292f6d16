"""ttscale's own PRM: automatic step labels on the embedded model, the value head's training
and format, and the scorer that loads it."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from ttscale.errors import ConfigError
from ttscale.grading import extract_answer, grade
from ttscale.prm_training.head import FitSettings, ValueHead, auroc, fit
from ttscale.prm_training.labels import LabelSettings, check_training_split, label_dataset
from ttscale.prm_training.train import split_problems, train_value_head
from ttscale.rewards import load_scorer
from ttscale.rewards.value_head import STEP_TOKEN, encode, read_manifest
from ttscale.steps import Step


# -- the head on synthetic features ---------------------------------------------------------
def planted(rng, rows: int, noise: bool = False):
    x = rng.normal(1.0, 3.0, size=(rows, 24)).astype(np.float32)
    logit = 0.8 * (x[:, 0] - 1) - 0.6 * (x[:, 3] - 1)
    p = 1 / (1 + np.exp(-logit))
    return x, (rng.permutation(p) if noise else p).astype(np.float32)


@pytest.mark.parametrize("hidden", [0, 32])
def test_training_recovers_a_planted_signal(hidden):
    rng = np.random.default_rng(0)
    x, p = planted(rng, 3000)
    x_val, p_val = planted(rng, 1000)
    head, history = fit(x, p, x_val, p_val, FitSettings(hidden=hidden, epochs=150))
    predicted = head.predict(x_val)
    assert np.corrcoef(predicted, p_val)[0, 1] > 0.98
    outcomes = rng.random(len(p_val)) < p_val
    # as good at ranking real outcomes as the true probabilities are
    assert auroc(predicted, outcomes) > auroc(p_val, outcomes) - 0.01
    assert history.validation_loss[history.best_epoch] == min(history.validation_loss)


def test_labels_unrelated_to_the_features_give_chance_ranking():
    rng = np.random.default_rng(1)
    x, p = planted(rng, 2000, noise=True)
    x_val, p_val = planted(rng, 2000, noise=True)
    head, _ = fit(x, p, x_val, p_val, FitSettings(hidden=0, epochs=60))
    assert abs(auroc(head.predict(x_val), p_val >= 0.5) - 0.5) < 0.05


def test_auroc_matches_counting_pairs_with_ties_as_half():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.4
    pairs = [(s_pos > s_neg) + 0.5 * (s_pos == s_neg)
             for s_pos, s_neg in itertools.product(scores[labels], scores[~labels])]
    assert auroc(scores, labels) == pytest.approx(np.mean(pairs))
    assert auroc(scores, np.ones(60, bool)) is None


def test_a_saved_head_predicts_the_same(tmp_path):
    rng = np.random.default_rng(3)
    x, p = planted(rng, 500)
    head, _ = fit(x, p, x[:100], p[:100], FitSettings(hidden=16, epochs=20))
    head.save(tmp_path)
    again = ValueHead.load(tmp_path)
    assert np.allclose(again.predict(x), head.predict(x), atol=1e-6)
    with pytest.raises(ConfigError, match="no value head"):
        ValueHead.load(tmp_path / "elsewhere")


def test_validation_problems_are_a_seeded_share_whatever_the_order():
    ids = [f"p{i}" for i in range(50)]
    held_out = split_problems(ids, 0.2, seed=0)
    assert len(held_out) == 10 and held_out == split_problems(ids[::-1] * 2, 0.2, seed=0)
    assert held_out != split_problems(ids, 0.2, seed=1)
    with pytest.raises(ConfigError, match="label more"):
        split_problems(["only"], 0.2, seed=0)


# -- the format ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reader():
    from ttscale.engines.llama_hidden import LlamaHiddenStates

    hidden = LlamaHiddenStates(n_threads=2, n_ctx=2048)
    yield hidden
    hidden.close()


def test_each_step_is_read_at_the_newline_after_it(reader):
    steps = ["  Step 1: 3 + 4 = 7.", "The answer is \\boxed{7}.  "]
    ids, positions = encode(reader.tokenize, "Tom has 3 apples.", steps)
    newline = reader.tokenize(STEP_TOKEN)[-1]
    assert len(positions) == 2 and positions[-1] == len(ids) - 1
    assert all(ids[p] == newline for p in positions)
    header = reader.tokenize("Tom has 3 apples." + STEP_TOKEN, add_bos=True)
    assert ids[:len(header)] == header
    first = reader.tokenize(steps[0].strip())
    assert ids[len(header):positions[0]] == first  # stripped, then the newline


def test_a_steps_features_do_not_depend_on_the_steps_after_it(reader):
    from ttscale.rewards.value_head import step_features

    problem = "A pen costs 2 dollars. How much do 5 pens cost?"
    steps = ["Step 1: 5 * 2 = 10.", "The answer is \\boxed{10}."]
    whole, tokens = step_features(reader, problem, steps)
    partial, _ = step_features(reader, problem, steps[:1])
    assert whole.shape == (2, reader.n_embd) and tokens > 0
    np.testing.assert_allclose(partial[0], whole[0], rtol=0, atol=1e-5)
    assert not np.allclose(whole[0], whole[1])


# -- labels on the embedded model ------------------------------------------------------------
SETTINGS = LabelSettings(samples=3, rollouts=2, max_solution_tokens=96, seed=0)


def test_test_sets_are_refused_for_labels():
    for name in ("gsm8k", "gsm8k_test", "math500", "aime24"):
        with pytest.raises(ConfigError, match="test set"):
            check_training_split(name)
    check_training_split("gsm8k_train")


@pytest.fixture(scope="module")
def engine():
    from ttscale.engines.llama_cpp import LlamaCppEngine

    policy = LlamaCppEngine(n_ctx=8192, n_threads=2)
    yield policy
    policy.free()


@pytest.fixture(scope="module")
def labelled(engine, tmp_path_factory):
    from ttscale.prompts import PromptFormat

    out = tmp_path_factory.mktemp("labels")
    outcome = label_dataset(engine, PromptFormat(), out, dataset="gsm8k_train", limit=6,
                            settings=SETTINGS, parallel=3)
    assert outcome.labelled == 6 and not outcome.failures
    return out


def test_labels_are_rollout_success_rates_and_the_last_step_its_own_answer(labelled):
    records = [json.loads(line) for line in (labelled / "labels.jsonl").read_text().splitlines()]
    assert len(records) == 6 and len({r["key"] for r in records}) == 6
    inner = 0
    for record in records:
        assert len(record["solutions"]) == SETTINGS.samples
        for solution in record["solutions"]:
            steps, labels = solution["steps"], solution["labels"]
            assert len(steps) == len(labels)
            if not steps:
                continue
            last = labels[-1]
            correct = grade(extract_answer(steps[-1]), record["reference"])
            assert solution["correct"] == correct
            assert last == {"soft": float(correct), "hard": correct, "correct": int(correct),
                            "rollouts": 0}
            for item in labels[:-1]:
                inner += 1
                assert item["rollouts"] == SETTINGS.rollouts
                assert 0 <= item["correct"] <= SETTINGS.rollouts
                assert item["soft"] == item["correct"] / SETTINGS.rollouts
                assert item["hard"] == (item["correct"] > 0)
        assert record["rolled_prefixes"] <= sum(max(0, len(s["steps"]) - 1)
                                                for s in record["solutions"])
    assert inner > 0  # multi-step solutions were rolled out


def test_labelling_resumes_and_refuses_other_settings(engine, labelled):
    from ttscale.prompts import PromptFormat

    again = label_dataset(engine, PromptFormat(), labelled, dataset="gsm8k_train", limit=6,
                          settings=SETTINGS, parallel=3)
    assert (again.labelled, again.skipped) == (0, 6)
    lines = (labelled / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 6
    with pytest.raises(ConfigError, match="other settings"):
        label_dataset(engine, PromptFormat(), labelled, dataset="gsm8k_train", limit=6,
                      settings=LabelSettings(samples=3, rollouts=3, max_solution_tokens=96),
                      parallel=3)


def screening_policy(correct_samples: set[int]):
    """A scripted policy: root sample j answers 7 (right) if j is in ``correct_samples``,
    else 8; a rollout from any step answers 7 only as its first completion."""
    from fakes import ScriptedPolicy

    def respond(prefix: str, j: int, stop):
        if prefix.rstrip().endswith("Solution:"):
            answer = 7 if j in correct_samples else 8
            return (f"Step 1: sample {j} starts.\nStep 2: it goes on.\n"
                    f"The answer is \\boxed{{{answer}}}.\nProblem: next", "stop")
        return (f"Step 3: rollout {j}.\nThe answer is \\boxed{{{7 if j == 0 else 8}}}.", "stop")

    return ScriptedPolicy(respond)


@pytest.mark.parametrize("right", [set(), {1, 4, 6}, set(range(8)), {5}])
def test_screening_labels_only_problems_the_policy_sometimes_solves(right):
    from ttscale.datasets import Problem
    from ttscale.prm_training.labels import label_problem
    from ttscale.prompts import PromptFormat

    policy = screening_policy(right)
    problem = Problem("p", "What is 3 + 4?", "7", "mine")
    settings = LabelSettings(samples=4, rollouts=2, max_solution_tokens=64, screen=8)
    record = asyncio.run(label_problem(problem, policy, PromptFormat(), settings))
    assert record["screen"] == {"samples": 8, "correct": len(right)}
    screened = policy.calls[0].replies[0]
    assert policy.calls[0].n == 8
    if not right:  # nothing to tell apart: no rollouts at all
        assert record["solutions"] == [] and len(policy.calls) == 1
        assert record["generated_tokens"] == sum(c.generated_tokens for c in screened)
        return
    # the right ones first, at most half of the four unless too few are wrong
    starts = [int(s["steps"][0].split()[3]) for s in record["solutions"]]
    take = min(len(right), 2)
    expected = sorted(right)[:take] + [j for j in range(8) if j not in right][:4 - take]
    expected += sorted(right)[take:take + 4 - len(expected)]
    assert starts == expected
    assert [s["correct"] for s in record["solutions"]] == [j in right for j in expected]
    for solution in record["solutions"]:
        # rollouts: the first of two answers right, so every inner step is worth a half
        assert [label["soft"] for label in solution["labels"]] == [
            0.5, 0.5, float(solution["correct"])]
    rolled = sum(c.generated_tokens for call in policy.calls[1:] for cs in call.replies
                 for c in cs)
    assert record["generated_tokens"] == sum(c.generated_tokens for c in screened) + rolled


def test_screening_must_sample_at_least_the_solutions_it_labels():
    with pytest.raises(ConfigError, match="--screen"):
        LabelSettings(samples=4, screen=2)


# -- training on them, and the scorer ----------------------------------------------------------
@pytest.fixture(scope="module")
def trained(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("head")
    manifest = train_value_head(labelled, out, name="test-head", validation=0.34,
                                settings=FitSettings(hidden=8, epochs=30), n_threads=2)
    return out, manifest


def test_training_writes_a_head_and_a_manifest_that_names_its_data(trained, labelled):
    out, manifest = trained
    assert (out / "head.npz").exists() and read_manifest(out) == manifest
    assert manifest["base_model"]["embedded"] and manifest["base_model"]["hidden_size"] == 576
    data = manifest["data"]
    [source] = data["sources"]
    assert source["dataset"] == "gsm8k_train" and source["labels"] == str(labelled)
    assert source["problems"] == 6 and source["settings"]["rollouts"] == SETTINGS.rollouts
    assert set(data["training_problems"]).isdisjoint(data["validation_problems"])
    assert len(data["training_problems"]) + len(data["validation_problems"]) == 6
    assert manifest["label_method"]["kind"] == "soft"
    valid = manifest["validation"]
    assert valid["problems"] == len(data["validation_problems"]) and valid["steps"] > 0
    assert (out / "head.npz").stat().st_size < 1_000_000
    # features are cached: a second training computes none and gives the same head
    again = train_value_head(labelled, out, name="test-head", validation=0.34,
                             settings=FitSettings(hidden=8, epochs=30), n_threads=2)
    assert again["validation"] == manifest["validation"]


def test_training_on_several_folders_uses_a_problem_labelled_twice_once(labelled, tmp_path,
                                                                       caplog):
    manifest = train_value_head([labelled, labelled], tmp_path, name="twice", validation=0.34,
                                settings=FitSettings(hidden=0, epochs=5), n_threads=2)
    first, second = manifest["data"]["sources"]
    assert (first["problems"], second["problems"]) == (6, 0)
    assert "6 problems of" in caplog.text
    data = manifest["data"]
    assert len(data["training_problems"]) + len(data["validation_problems"]) == 6


def test_the_head_scores_steps_as_a_prm(trained):
    out, _ = trained
    scorer = load_scorer(f"value-head:{out}")
    problem = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    solutions = [[Step("Step 1: 3 + 4 = 7."), Step("The answer is \\boxed{7}.")],
                 [Step("Step 1: 3 * 4 = 12."), Step("The answer is \\boxed{12}.")], []]
    batch = asyncio.run(scorer.score(problem, solutions))
    assert [len(s) for s in batch.scores] == [2, 2, 0]
    assert all(0 < v < 1 for s in batch.scores for v in s)
    assert batch.tokens.prompt > 0 and scorer.parameters > 1e8
    # a partial solution's scores are the whole one's first scores (beam search relies on it)
    partial = asyncio.run(scorer.score(problem, [solutions[0][:1]]))
    assert partial.scores[0][0] == pytest.approx(batch.scores[0][0], abs=1e-5)
    asyncio.run(scorer.close())


def test_a_head_refuses_another_base_model(trained, tmp_path):
    out, manifest = trained
    copy = tmp_path / "head"
    copy.mkdir()
    (copy / "head.npz").write_bytes((out / "head.npz").read_bytes())
    manifest = {**manifest, "base_model": {**manifest["base_model"], "fingerprint": "0" * 64}}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="trained on"):
        load_scorer(f"value-head:{copy}")
    with pytest.raises(ConfigError, match="not a folder"):
        load_scorer(f"value-head:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="needs the folder"):
        load_scorer("value-head")


def test_step_auroc_leaves_the_training_problems_out(trained, labelled):
    from ttscale.prm_training.evaluate import held_out_step_metrics

    out, manifest = trained
    scorer = load_scorer(f"value-head:{out}")
    try:
        result = held_out_step_metrics(scorer, labelled)
    finally:
        asyncio.run(scorer.close())
    assert result["excluded_training_problems"] == len(manifest["data"]["training_problems"])
    assert result["steps"] == manifest["validation"]["steps"]
    assert result["auroc_hard"] == manifest["validation"]["auroc_hard"]


def test_labels_files_with_a_bad_record_are_reported_not_fatal(trained, labelled, tmp_path,
                                                               caplog):
    broken = tmp_path / "labels"
    broken.mkdir()
    lines = (labelled / "labels.jsonl").read_text().splitlines()
    bad = json.loads(lines[0])
    bad["solutions"][0]["labels"] = []  # labels no longer match the steps
    (broken / "labels.jsonl").write_text("\n".join([json.dumps(bad), "{cut", *lines[1:]]) + "\n")
    (broken / "manifest.json").write_text((labelled / "manifest.json").read_text())
    from ttscale.prm_training.labels import read_labels
    from ttscale.prm_training.train import step_table

    scorer = load_scorer(f"value-head:{trained[0]}")
    try:
        table = step_table(read_labels(broken), scorer.reader)
    finally:
        asyncio.run(scorer.close())
    assert len(set(table.problem.tolist())) == 5
    assert "skipped" in caplog.text


def test_no_labels_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="ttscale prm label"):
        train_value_head(tmp_path / "none", tmp_path / "out", name="x")


def test_the_shipped_head_loads_and_scores():
    from ttscale.rewards.value_head import MANIFEST_FILE, shipped_head_folder

    folder = shipped_head_folder()
    assert (folder / MANIFEST_FILE).exists(), f"the package ships no head in {folder}"
    # small enough to ship, with its evaluation and card beside it
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2**20
    assert {"eval.json", "README.md"} <= {f.name for f in folder.iterdir()}
    scorer = load_scorer("ttscale-smollm2")
    batch = asyncio.run(scorer.score("What is 2 + 3?", [[Step("2 + 3 = 5."),
                                                          Step("The answer is \\boxed{5}.")]]))
    assert len(batch.scores[0]) == 2 and all(0 < v < 1 for v in batch.scores[0])
    assert scorer.manifest["base_model"]["embedded"]
    asyncio.run(scorer.close())



def test_search_evaluation_compares_the_head_confidence_and_majority(engine, trained, tmp_path):
    from ttscale.prm_training.evaluate import evaluate
    from ttscale.prompts import PromptFormat
    from ttscale.records import read_records

    out, _ = trained
    result = evaluate(f"value-head:{out}", tmp_path, labels=None, policy=engine,
                      prompt=PromptFormat(), limit=2, budget=2, methods=("bon",),
                      max_solution_tokens=64, parallel=2)
    rows = {row["search"]: row for row in result["search"]["rows"]}
    assert set(rows) == {f"bon + value-head:{out}", "bon + confidence", "majority"}
    for row in rows.values():
        assert row["problems"] == 2
        assert row["accuracy"]["low"] <= row["accuracy"]["value"] <= row["accuracy"]["high"]
    # each figure is the share of correct records in its run
    for spec, folder in result["search"]["runs"].items():
        records = read_records(Path(folder) / "records.jsonl").records
        bon = [r for r in records if r["method"] == "bon"]
        assert rows[f"bon + {spec}"]["accuracy"]["value"] == \
            sum(r["correct"] for r in bon) / len(bon)
        assert rows[f"bon + {spec}"]["pass_at_n"]["value"] == \
            sum(r["pass_at_n"] for r in bon) / len(bon)
    for row in rows.values():
        assert row["pass_at_n"]["value"] >= row["accuracy"]["value"]
    assert json.loads((tmp_path / "eval.json").read_text())["search"]["rows"]
    # the head's card is written from that evaluation: each row's figures, as printed
    from ttscale.prm_training.card import write_card

    text = write_card(out, tmp_path / "eval.json").read_text()
    assert json.loads((out / "eval.json").read_text()) == result
    for row in result["search"]["rows"]:
        accuracy = row["accuracy"]
        reachable = row["pass_at_n"]
        assert (f"| {row['search']} | 2 | {accuracy['value']:.1%} [{accuracy['low']:.1%}, "
                f"{accuracy['high']:.1%}] |") in text
        assert (f"| {reachable['value']:.1%} [{reachable['low']:.1%}, "
                f"{reachable['high']:.1%}] |\n") in text
    assert f"{manifest_of(out)['validation']['bce']:.4f}" in text
    assert "majority vote" in text
    (tmp_path / "other.json").write_text(json.dumps({**result, "manifest": {}}))
    with pytest.raises(ConfigError, match="another head"):
        write_card(out, tmp_path / "other.json")


def manifest_of(folder: Path) -> dict:
    return read_manifest(folder)


def test_the_cli_refuses_test_sets_for_labels(tmp_path):
    from typer.testing import CliRunner

    from ttscale.cli.main import app

    result = CliRunner().invoke(app, ["prm", "label", "--dataset", "gsm8k", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "test set" in result.output
