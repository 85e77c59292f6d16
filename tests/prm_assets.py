"""Tiny PRM checkpoints of the real architectures, with the real tokenizers, built locally
(and reading a run record back, for the tests that score a run with them).

The published PRMs cannot be downloaded here, but their tokenizers can be rebuilt from public
vocabulary files, and their architectures from transformers' configs with random weights.
The vocabulary files are fetched once, at install time, by ``make test-assets``
(``scripts/fetch_test_assets.py``, checksummed); a test run reads them and opens no network
connection. Qwen2.5-Math-PRM's tokenizer is the Qwen2 one with ``<extra_0>`` at id 151651,
which is set here."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from ttscale.prompts import resolve_chat_template

DATA = Path(__file__).resolve().parent / "data"
QWEN_PRM_TAG_ID = 151651
_FETCH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_test_assets.py"


@functools.cache
def _fetcher():
    spec = importlib.util.spec_from_file_location("fetch_test_assets", _FETCH_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assets_dir() -> Path:
    return _fetcher().assets_dir()


class MissingTestAssetsError(RuntimeError):
    pass


def _raw_files() -> dict[str, Path]:
    """The three public vocabulary files, as ``make test-assets`` fetched and checked them."""
    fetcher = _fetcher()
    problems = fetcher.missing_or_wrong()
    if problems:
        raise MissingTestAssetsError(
            "the PRM-format tests need the vocabulary files that `make test-assets` (part of "
            "`make install-test`) fetches and checks; run it first. " + "; ".join(problems))
    return {"qwen2": fetcher.raw_path("ggml-vocab-qwen2.gguf"),
            "llama3": fetcher.raw_path("ggml-vocab-llama-bpe.gguf"),
            "mistral": fetcher.raw_path("mistral/tokenizer.model")}


def _rename_token(tokenizer_json: Path, token_id: int, new: str) -> None:
    """Give the added token at ``token_id`` a new text, in the added-token list and vocab."""
    data = json.loads(tokenizer_json.read_text())
    for entry in data["added_tokens"]:
        if entry["id"] == token_id:
            old = entry["content"]
            entry["content"] = new
            entry["special"] = True
            break
    else:
        raise KeyError(token_id)
    vocab = data["model"].get("vocab")
    if isinstance(vocab, dict) and old in vocab:
        vocab[new] = vocab.pop(old)
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False))


# the reasoning families' special tokens at their ids in the published tokenizers (the
# Qwen2 vocabulary file has padding entries there)
R1_DISTILL_TOKENS = {151643: "<｜end▁of▁sentence｜>", 151644: "<｜User｜>",
                     151645: "<｜Assistant｜>", 151646: "<｜begin▁of▁sentence｜>",
                     151648: "<think>", 151649: "</think>"}
QWEN3_TOKENS = {151667: "<think>", 151668: "</think>"}


def tokenizer_dirs() -> dict[str, Path]:
    """HF tokenizer folders: ``qwen-prm`` (Qwen2 + ``<extra_0>``), ``llama3`` (Llama 3 with
    the Llama 3.1 chat template), ``mistral`` (Mistral 7B v0.1), and the reasoning families
    on Qwen2's vocabulary with their own special tokens at their ids and their chat
    templates: ``r1-distill`` (DeepSeek-R1-Distill-Qwen) and ``qwen3``."""
    from transformers import AutoTokenizer

    final = assets_dir() / "tokenizers-v2"
    names = ("qwen-prm", "llama3", "mistral", "r1-distill", "qwen3")
    if all((final / name / "tokenizer.json").exists() for name in names):
        return {name: final / name for name in names}
    raw = _raw_files()
    # built aside and moved into place in one rename: two test runs at once never read a
    # half-written tokenizer
    out = Path(tempfile.mkdtemp(prefix="tokenizers-", dir=assets_dir()))
    dirs = {name: out / name for name in names}
    qwen = AutoTokenizer.from_pretrained(raw["qwen2"].parent, gguf_file=raw["qwen2"].name)
    qwen.chat_template = (DATA / "qwen2.5_chat_template.jinja").read_text()
    qwen.save_pretrained(dirs["qwen-prm"])
    _rename_token(dirs["qwen-prm"] / "tokenizer.json", QWEN_PRM_TAG_ID, "<extra_0>")
    for name, template, tokens in (("r1-distill", "deepseek-r1", R1_DISTILL_TOKENS),
                                   ("qwen3", "qwen3", QWEN3_TOKENS)):
        family = AutoTokenizer.from_pretrained(raw["qwen2"].parent,
                                               gguf_file=raw["qwen2"].name)
        family.chat_template = resolve_chat_template(template, None)  # the shipped one
        family.save_pretrained(dirs[name])
        for token_id, token in tokens.items():
            _rename_token(dirs[name] / "tokenizer.json", token_id, token)
    llama = AutoTokenizer.from_pretrained(raw["llama3"].parent, gguf_file=raw["llama3"].name)
    llama.chat_template = (DATA / "llama3.1_chat_template.jinja").read_text()
    llama.save_pretrained(dirs["llama3"])
    spm_dir = out / "mistral-spm"
    spm_dir.mkdir(parents=True, exist_ok=True)
    (spm_dir / "tokenizer.model").write_bytes(raw["mistral"].read_bytes())
    (spm_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": True}))
    AutoTokenizer.from_pretrained(spm_dir).save_pretrained(dirs["mistral"])
    try:
        out.rename(final)
    except OSError:  # another run finished first: use its folder
        shutil.rmtree(out, ignore_errors=True)
    return {name: final / name for name in names}


def _tiny(config_cls, vocab_size: int, **extra):
    return config_cls(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=False, **extra)


def _save_backbone_with_head(folder: Path, config, head: dict, architecture: str,
                             with_lm_head: bool = False) -> None:
    """Write a checkpoint laid out as the published one: ``model.*`` backbone tensors, the
    format's head tensors and ``config.json`` naming the published architecture."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel

    torch.manual_seed(0)
    backbone = AutoModel.from_config(config)
    tensors = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    if with_lm_head:
        tensors["lm_head.weight"] = torch.randn(config.vocab_size, config.hidden_size) * 0.02
    tensors.update({k: v.contiguous() for k, v in head.items()})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    data = config.to_dict()
    data["architectures"] = [architecture]
    # the published checkpoints point at their own modeling code; it must never be needed
    data["auto_map"] = {"AutoModel": f"modeling_prm.{architecture}"}
    (folder / "config.json").write_text(json.dumps(data, indent=2))


def build_checkpoints(root: Path) -> dict[str, Path]:
    """One tiny checkpoint per format, each with its real tokenizer, under ``root``."""
    import torch
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
    )

    tokenizers = tokenizer_dirs()
    torch.manual_seed(0)
    made: dict[str, Path] = {}

    qwen_tok = AutoTokenizer.from_pretrained(tokenizers["qwen-prm"])
    config = _tiny(Qwen2Config, len(qwen_tok))
    hidden = config.hidden_size
    head = {"score.0.weight": torch.randn(hidden, hidden) * 0.5,
            "score.0.bias": torch.randn(hidden) * 0.1,
            "score.2.weight": torch.randn(2, hidden) * 0.5,
            "score.2.bias": torch.randn(2) * 0.1}
    made["qwen-prm"] = root / "qwen-prm"
    _save_backbone_with_head(made["qwen-prm"], config, head, "Qwen2ForProcessRewardModel")
    qwen_tok.save_pretrained(made["qwen-prm"])

    made["skywork"] = root / "skywork"
    head = {"v_head.summary.weight": torch.randn(1, hidden) * 0.5,
            "v_head.summary.bias": torch.randn(1) * 0.1}
    _save_backbone_with_head(made["skywork"], config, head, "Qwen2ForPrmModel",
                             with_lm_head=True)
    skywork_tok = AutoTokenizer.from_pretrained(tokenizers["qwen-prm"])
    skywork_tok.bos_token = "<|endoftext|>"
    skywork_tok.save_pretrained(made["skywork"])

    mistral_tok = AutoTokenizer.from_pretrained(tokenizers["mistral"])
    model = MistralForCausalLM(_tiny(MistralConfig, len(mistral_tok)))
    made["math-shepherd"] = root / "math-shepherd"
    model.save_pretrained(made["math-shepherd"])
    mistral_tok.save_pretrained(made["math-shepherd"])

    llama_tok = AutoTokenizer.from_pretrained(tokenizers["llama3"])
    model = LlamaForCausalLM(_tiny(LlamaConfig, len(llama_tok)))
    made["rlhflow"] = root / "rlhflow"
    model.save_pretrained(made["rlhflow"])
    llama_tok.save_pretrained(made["rlhflow"])
    return made


def recorded_step_texts(record: dict, candidate: dict) -> list[str]:
    """A candidate's step texts, read back from its run record's tree (root excluded)."""
    nodes = {node["id"]: node for node in record["tree"]}
    texts, node = [], nodes[candidate["node"]]
    while node["parent"] is not None:
        texts.append(node["text"])
        node = nodes[node["parent"]]
    return texts[::-1]
