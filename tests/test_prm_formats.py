"""The four published PRM formats, each checked on a tiny random model of its real
architecture with its real tokenizer: the exact input, the positions read, the label ids, the
read-out against the model card's own procedure, position-exactness and batching."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM  # noqa: E402

from prm_assets import build_checkpoints, recorded_step_texts  # noqa: E402
from reliability_log import log_case  # noqa: E402
from ttscale.errors import ConfigError, ContextLengthError, ModelLoadError  # noqa: E402
from ttscale.rewards.math_shepherd import MathShepherdPRM, prm_input  # noqa: E402
from ttscale.rewards.qwen_prm import QwenMathPRM  # noqa: E402
from ttscale.rewards.rlhflow import RLHFlowPRM, conversation  # noqa: E402
from ttscale.rewards.skywork import SkyworkPRM  # noqa: E402
from ttscale.steps import Step  # noqa: E402

PROBLEM = "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest for $2 each."
STEPS = ["Step 1: 16 - 3 - 4 = 9 eggs are left.",
         "Step 2: 9 * 2 = 18 dollars.",
         "The answer is \\boxed{18}."]

# the Math-Shepherd model card's own example
CARD_QUESTION = ("Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every "
                 "morning and bakes muffins for her friends every day with four. She sells the "
                 "remainder at the farmers' market daily for $2 per fresh duck egg. How much in "
                 "dollars does she make every day at the farmers' market?")
CARD_STEPS = [
    "Step 1: Janet's ducks lay 16 eggs per day.",
    "Step 2: She eats three for breakfast every morning, so she has 16 - 3 = 13 eggs left.",
    "Step 3: She bakes muffins for her friends every day with four eggs, so she has 13 - 4 = 9 "
    "eggs left.",
    "Step 4: She sells the remainder at the farmers' market daily for $2 per fresh duck egg, so "
    "she makes 9 * $2 = $18 every day at the farmers' market. The answer is: 18",
]
CARD_OUTPUT = (
    "Step 1: Janet's ducks lay 16 eggs per day. ки\nStep 2: She eats three for breakfast every "
    "morning, so she has 16 - 3 = 13 eggs left. ки\nStep 3: She bakes muffins for her friends "
    "every day with four eggs, so she has 13 - 4 = 9 eggs left. ки\nStep 4: She sells the "
    "remainder at the farmers' market daily for $2 per fresh duck egg, so she makes 9 * $2 = $18 "
    "every day at the farmers' market. The answer is: 18 ки")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.set_num_threads(1)
    return build_checkpoints(tmp_path_factory.mktemp("prms"))


@pytest.fixture(scope="module")
def qwen(checkpoints):
    return QwenMathPRM(checkpoints["qwen-prm"])


@pytest.fixture(scope="module")
def shepherd(checkpoints):
    return MathShepherdPRM(checkpoints["math-shepherd"])


@pytest.fixture(scope="module")
def rlhflow(checkpoints):
    return RLHFlowPRM(checkpoints["rlhflow"])


@pytest.fixture(scope="module")
def skywork(checkpoints):
    return SkyworkPRM(checkpoints["skywork"])


def steps_of(texts):
    return [Step(t) for t in texts]


def score(prm, problem, solutions):
    return asyncio.run(prm.score(problem, [steps_of(s) for s in solutions])).scores


def head_tensors(folder, prefix):
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return {k[len(prefix):]: handle.get_tensor(k) for k in handle.keys()
                if k.startswith(prefix)}


# -- Qwen2.5-Math-PRM ---------------------------------------------------------------------
def test_qwen_input_is_the_model_cards_chat(qwen):
    expected = (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\n" + PROBLEM + "<|im_end|>\n"
        "<|im_start|>assistant\nStep 1: 16 - 3 - 4 = 9 eggs are left.<extra_0>"
        "Step 2: 9 * 2 = 18 dollars.<extra_0>The answer is \\boxed{18}.<extra_0><|im_end|>\n")
    assert qwen.render(PROBLEM, STEPS) == expected
    encoded = qwen.encode(PROBLEM, STEPS)
    assert encoded.input_ids == qwen.tokenizer.encode(expected)
    assert qwen.tag_id == 151651
    assert [encoded.input_ids[p] for p in encoded.positions] == [151651] * 3
    # the tag closes each step: the token before the first tag is the end of step 1's text
    assert qwen.tokenizer.decode(encoded.input_ids[:encoded.positions[0]]).endswith("left.")


def test_qwen_read_out_matches_the_cards_procedure(qwen, checkpoints):
    encoded = qwen.encode(PROBLEM, STEPS)
    ids = torch.tensor([encoded.input_ids])
    weights = head_tensors(checkpoints["qwen-prm"], "score.")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(checkpoints["qwen-prm"])(ids).last_hidden_state[0]
        h = torch.relu(hidden @ weights["0.weight"].T + weights["0.bias"])
        logits = h @ weights["2.weight"].T + weights["2.bias"]
    probabilities = logits.softmax(-1)
    expected = probabilities[ids[0] == 151651][:, 1].tolist()
    assert score(qwen, PROBLEM, [STEPS])[0] == pytest.approx(expected, abs=1e-5)


# -- Math-Shepherd ------------------------------------------------------------------------
def test_shepherd_input_and_ids_follow_the_model_card(shepherd):
    assert prm_input(CARD_QUESTION, CARD_STEPS) == f"{CARD_QUESTION} {CARD_OUTPUT}"
    assert shepherd.tag_id == 12902
    assert shepherd.candidate_ids == [648, 387]
    encoded = shepherd.encode(CARD_QUESTION, CARD_STEPS)
    assert encoded.input_ids[0] == shepherd.tokenizer.bos_token_id
    assert [encoded.input_ids[p] for p in encoded.positions] == [12902] * 4
    # a tag inside the problem text must not become a fifth read position
    assert len(shepherd.encode(CARD_QUESTION + " ки", CARD_STEPS).positions) == 4


def test_shepherd_read_out_matches_the_cards_procedure(shepherd, checkpoints):
    ids = torch.tensor([shepherd.tokenizer.encode(f"{CARD_QUESTION} {CARD_OUTPUT}")])
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(checkpoints["math-shepherd"])
        logits = model(ids).logits[:, :, [648, 387]]
    expected = logits.softmax(dim=-1)[:, :, 0][ids == 12902].tolist()
    assert score(shepherd, CARD_QUESTION, [CARD_STEPS])[0] == pytest.approx(expected, abs=1e-5)


# -- RLHFlow ------------------------------------------------------------------------------
def test_rlhflow_input_is_one_user_turn_per_step(rlhflow):
    header = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
              "Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>")

    def turn(role, text):
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"

    expected = header + "".join([
        turn("user", f"{PROBLEM} {STEPS[0]}"), turn("assistant", "+"),
        turn("user", STEPS[1]), turn("assistant", "+"),
        turn("user", STEPS[2]), turn("assistant", "+")])
    text = rlhflow.tokenizer.apply_chat_template(conversation(PROBLEM, STEPS), tokenize=False)
    assert text == expected
    encoded = rlhflow.encode(PROBLEM, STEPS)
    plus, minus = rlhflow.tokenizer.encode("+")[-1], rlhflow.tokenizer.encode("-")[-1]
    assert (rlhflow.good_id, rlhflow.bad_id) == (plus, minus)
    # each read position is the header's closing newlines; the token after it is the label
    tokens = rlhflow.tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert [tokens[p] for p in encoded.positions] == ["ĊĊ"] * 3
    assert [encoded.input_ids[p + 1] for p in encoded.positions] == [plus] * 3


def test_rlhflow_one_pass_equals_the_reference_pass_per_step(rlhflow, checkpoints):
    model = AutoModelForCausalLM.from_pretrained(checkpoints["rlhflow"])
    plus, minus = rlhflow.good_id, rlhflow.bad_id
    expected = []
    with torch.no_grad():
        for k in range(1, len(STEPS) + 1):  # the reference: the chat cut after step k, index -3
            ids = rlhflow.tokenizer.apply_chat_template(conversation(PROBLEM, STEPS[:k]),
                                                        tokenize=True, return_dict=False)
            logits = model(torch.tensor([ids])).logits[0, -3, [plus, minus]]
            expected.append(logits.softmax(-1)[0].item())
    assert score(rlhflow, PROBLEM, [STEPS])[0] == pytest.approx(expected, abs=1e-5)


# -- Skywork ------------------------------------------------------------------------------
def test_skywork_input_is_built_step_by_step(skywork):
    tokenizer = skywork.tokenizer
    newline = tokenizer.encode("\n")[-1]
    expected = tokenizer.encode("<|endoftext|>" + PROBLEM + "\n")
    for step in STEPS:
        expected += tokenizer.encode(step) + [newline]
    encoded = skywork.encode(PROBLEM, STEPS)
    assert encoded.input_ids == expected
    assert tokenizer.decode(expected) == "<|endoftext|>" + PROBLEM + "\n" + "\n".join(STEPS) + "\n"
    assert [encoded.input_ids[p] for p in encoded.positions] == [newline] * 3
    assert encoded.positions[-1] == len(expected) - 1


def test_skywork_read_out_matches_the_reference(skywork, checkpoints):
    # the reference inference code: split the response at newlines, flag each step's last
    # token, sigmoid of the value head there
    tokenizer = skywork.tokenizer
    ids = tokenizer.encode(tokenizer.bos_token + PROBLEM + "\n")
    flags = [0] * len(ids)
    for step in "\n".join(STEPS).split("\n"):
        step_ids = tokenizer.encode(step) + [tokenizer.encode("\n")[-1]]
        ids += step_ids
        flags += [0] * (len(step_ids) - 1) + [1]
    weights = head_tensors(checkpoints["skywork"], "v_head.summary.")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(checkpoints["skywork"])(
            torch.tensor([ids])).last_hidden_state[0]
        values = torch.sigmoid(hidden @ weights["weight"].T + weights["bias"])[:, 0]
    expected = values[torch.tensor(flags) == 1].tolist()
    assert score(skywork, PROBLEM, [STEPS])[0] == pytest.approx(expected, abs=1e-5)


# -- every format -------------------------------------------------------------------------
FORMATS = ["qwen", "shepherd", "rlhflow", "skywork"]


@pytest.mark.parametrize("name", FORMATS)
def test_changing_one_position_changes_exactly_that_step(name, request):
    prm = request.getfixturevalue(name)
    encoded = prm.encode(PROBLEM, STEPS)
    before = score(prm, PROBLEM, [STEPS])[0]
    target = encoded.positions[1]
    generator = torch.Generator().manual_seed(1)
    delta = torch.randn(prm.backbone.config.hidden_size, generator=generator) * 20

    def nudge(module, args, output):
        output.last_hidden_state[:, target] += delta.to(output.last_hidden_state.dtype)
        return output

    handle = prm.backbone.register_forward_hook(nudge)
    try:
        after = score(prm, PROBLEM, [STEPS])[0]
    finally:
        handle.remove()
    assert after[0] == pytest.approx(before[0], abs=1e-6)
    assert after[2] == pytest.approx(before[2], abs=1e-6)
    assert abs(after[1] - before[1]) > 1e-3


@pytest.mark.parametrize("name", FORMATS)
def test_batched_scores_equal_one_by_one(name, request):
    prm = request.getfixturevalue(name)
    solutions = [STEPS, STEPS[:1], ["Step 1: 16 - 7 = 9.", "Step 2: 9 + 9 = 18, more words."],
                 []]
    alone = [score(prm, PROBLEM, [s])[0] for s in solutions]
    limit = prm.max_batch_tokens
    try:
        together = score(prm, PROBLEM, solutions)
        prm.max_batch_tokens = 150  # force several micro-batches, with padding in each
        split = score(prm, PROBLEM, solutions)
    finally:
        prm.max_batch_tokens = limit
    for a, b, c in zip(alone, together, split, strict=True):
        assert b == pytest.approx(a, abs=1e-5)
        assert c == pytest.approx(a, abs=1e-5)
    assert alone[3] == []
    assert all(0 <= v <= 1 for s in together for v in s)


def test_ledger_counts_the_prm_input_tokens(qwen):
    batch = asyncio.run(qwen.score(PROBLEM, [steps_of(STEPS), steps_of(STEPS[:1])]))
    expected = len(qwen.encode(PROBLEM, STEPS).input_ids) + len(
        qwen.encode(PROBLEM, STEPS[:1]).input_ids)
    assert batch.tokens.prompt == expected
    assert qwen.parameters == sum(p.numel() for p in qwen.model.parameters())


def test_an_input_past_the_prms_context_is_refused_naming_the_limit(qwen):
    assert qwen.context_length == 4096  # the tiny checkpoints' max_position_embeddings
    long_step = "Step 1: " + "9 + 9 = 18. " * 2000
    assert len(qwen.encode(PROBLEM, [long_step]).input_ids) > 4096
    with pytest.raises(ContextLengthError, match=r"solution 1 is \d+ tokens .* past the PRM's "
                                                 r"context of 4096"):
        score(qwen, PROBLEM, [STEPS, [long_step]])
    log_case("over-long inputs", "in-process PRM input past max_position_embeddings",
             result="refused: ContextLengthError naming the limit")


def test_a_nan_from_the_prm_is_refused_naming_the_step_not_read_as_zero(qwen, monkeypatch):
    torch = pytest.importorskip("torch")
    real_read = type(qwen).read

    def nan_at_step_1(self, hidden):
        probs = real_read(self, hidden).clone()
        probs[1] = torch.nan
        return probs

    monkeypatch.setattr(type(qwen), "read", nan_at_step_1)
    with pytest.raises(ValueError, match="returned score nan for step 1 of solution 0"):
        score(qwen, PROBLEM, [STEPS])
    log_case("numbers that are not numbers", "in-process PRM probability nan",
             result="refused: error naming the scorer and the step")


def test_a_checkpoint_of_another_architecture_is_refused(checkpoints):
    with pytest.raises(ConfigError, match="MistralForCausalLM.*qwen-prm format expects "
                                          "Qwen2ForProcessRewardModel"):
        QwenMathPRM(checkpoints["math-shepherd"])
    with pytest.raises(ConfigError, match="skywork format expects Qwen2ForPrmModel"):
        SkyworkPRM(checkpoints["qwen-prm"])
    with pytest.raises(ConfigError, match="rlhflow"):
        RLHFlowPRM(checkpoints["math-shepherd"])


def test_missing_or_odd_paths_say_what_to_pass(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        QwenMathPRM(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="no config.json"):
        QwenMathPRM(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        QwenMathPRM(tmp_path / "weights.bin")


def test_loading_never_runs_checkpoint_code(checkpoints):
    # the checkpoints name modeling code in auto_map that does not exist: loading works only
    # because none of it is imported
    prm = QwenMathPRM(checkpoints["qwen-prm"])
    assert type(prm.backbone).__module__.startswith("transformers.")


@pytest.mark.slow
def test_a_run_scores_every_step_with_the_prm(checkpoints, qwen, tmp_path):
    """`ttscale run --prm qwen-prm:PATH` on the embedded policy: each candidate's recorded step
    scores are the PRM's scores of that candidate's steps, and the PRM is on the ledger."""
    import json

    from typer.testing import CliRunner

    from ttscale.cli.main import app
    from ttscale.datasets import load_dataset

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--dataset", "gsm8k", "--limit", "1", "--method", "bon", "--n", "2",
        "--prm", f"qwen-prm:{checkpoints['qwen-prm']}", "--max-step-tokens", "32",
        "--max-solution-tokens", "96", "--max-depth", "4", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert record["scorer"] == f"qwen-prm:{checkpoints['qwen-prm']}"
    problem = load_dataset("gsm8k").problems[0].problem
    for candidate in record["candidates"]:
        texts = recorded_step_texts(record, candidate)
        assert candidate["step_scores"] == pytest.approx(
            score(qwen, problem, [texts])[0], abs=1e-5)
    ledger = record["ledger"]
    assert ledger["scorer_parameters"] == qwen.parameters
    assert ledger["scorer_tokens"]["prompt"] > 0 and ledger["scorer_flops"] > 0
