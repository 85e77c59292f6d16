"""ttscale's own PRM: a value head on a policy's hidden states (``ttscale prm train``), and the
one shipped for the embedded SmolLM2-135M (``--prm ttscale-smollm2``).

Input, Skywork-PRM's format built piece by piece: the tokens of ``problem + "\\n"`` (with the
model's BOS), then for each step the tokens of the stripped step followed by the ``"\\n"``
token. Read-out: the model's final hidden state at each of those newline tokens (llama.cpp,
embeddings mode), through the head (:mod:`ttscale.prm_training.head`); the sigmoid is the
step's score. Training features and scoring both come from :func:`encode` and
:func:`step_features` here, so they cannot drift apart.

Runs in the default install: llama.cpp computes the hidden states and the head is numpy. A
head folder holds ``head.npz`` and ``manifest.json``; the manifest names the base model (its
GGUF file and fingerprint), the data, the label method and the validation metrics, and a head
refuses a base model other than its own."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np

from ttscale.compute import TokenCount
from ttscale.errors import ConfigError
from ttscale.rewards.base import ScoreBatch
from ttscale.steps import Step

STEP_TOKEN = "\n"
MANIFEST_FILE = "manifest.json"
SHIPPED_NAME = "ttscale-smollm2"


def encode(tokenize: Callable[..., list[int]], problem: str,
           steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """(token ids, read positions): one position per step, at the newline after it."""
    ids = tokenize(problem.strip() + STEP_TOKEN, add_bos=True)
    newline = tokenize(STEP_TOKEN)[-1]
    positions = []
    for step in steps:
        ids = ids + tokenize(step.strip()) + [newline]
        positions.append(len(ids) - 1)
    return ids, positions


def step_features(reader, problem: str, steps: Sequence[str]) -> tuple[np.ndarray, int]:
    """The hidden state at each step's read position, and the tokens the pass computed."""
    if not steps:
        return np.empty((0, reader.n_embd), dtype=np.float32), 0
    ids, positions = encode(reader.tokenize, problem, steps)
    return reader.hidden_states(ids, positions), len(ids)


def gguf_fingerprint(path: Path) -> str:
    """A cheap identity of a GGUF file: its size and its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(2**20))
        handle.seek(max(0, size - 2**20))
        digest.update(handle.read(2**20))
    return digest.hexdigest()


def shipped_head_folder(name: str = SHIPPED_NAME) -> Path:
    return Path(str(files("ttscale") / "prm_heads" / name))


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.exists():
        raise ConfigError(f"{folder} is not a value-head folder (no {MANIFEST_FILE}); give "
                          "the --out folder of `ttscale prm train`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from exc


class ValueHeadPRM:
    """A value-head PRM from a head folder. Its base model is the embedded GGUF when the
    manifest says so, else ``model_path`` or the GGUF the manifest names."""

    pointwise = True

    def __init__(self, folder: str | Path, *, model_path: str | Path | None = None,
                 n_threads: int | None = None, n_ctx: int = 4096, **_: object) -> None:
        from ttscale.engines.llama_hidden import LlamaHiddenStates
        from ttscale.rewards.value_head_model import ValueHead

        self.folder = Path(folder).expanduser()
        self.manifest = read_manifest(self.folder)
        base = self.manifest.get("base_model", {})
        if model_path is None and not base.get("embedded"):
            model_path = base.get("path")
        self.reader = LlamaHiddenStates(model_path, n_ctx=n_ctx, n_threads=n_threads)
        expected = base.get("fingerprint")
        if expected and gguf_fingerprint(self.reader.path) != expected:
            raise ConfigError(f"the value head in {self.folder} was trained on "
                              f"{base.get('file')}, not {self.reader.path.name}: its scores "
                              "would mean nothing on another model")
        self.head = ValueHead.load(self.folder)
        if self.head.inputs != self.reader.n_embd:
            raise ConfigError(f"the value head reads {self.head.inputs} features but "
                              f"{self.reader.path.name} has hidden size {self.reader.n_embd}")
        self.name = self.manifest.get("name") or f"value-head:{self.folder}"
        self._parameters = base.get("parameters")

    @property
    def parameters(self) -> int | None:
        return self._parameters

    def score_sync(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        scores, tokens = [], 0
        for steps in solutions:
            features, computed = step_features(self.reader, problem, [s.text for s in steps])
            tokens += computed
            scores.append([float(p) for p in self.head.predict(features)] if len(steps) else [])
        return ScoreBatch(scores, TokenCount(prompt=tokens))

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return await asyncio.to_thread(self.score_sync, problem, solutions)

    async def close(self) -> None:
        self.reader.close()


class ShippedValueHeadPRM(ValueHeadPRM):
    """``--prm ttscale-smollm2``: the head trained for the embedded SmolLM2-135M."""

    def __init__(self, **options: object) -> None:
        folder = shipped_head_folder()
        if not (folder / MANIFEST_FILE).exists():
            raise ConfigError(f"this installation has no {SHIPPED_NAME} head ({folder}); "
                              "reinstall ttscale, or train one with `ttscale prm train`")
        super().__init__(folder, **options)
