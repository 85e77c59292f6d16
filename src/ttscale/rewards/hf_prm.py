"""What every in-process PRM shares: opening a checkpoint, batched forward passes, read-out.

A PRM format (one file each: ``qwen_prm.py``, ``math_shepherd.py``, ``rlhflow.py``,
``skywork.py``) says only how a problem and its steps become token ids, which positions are
read, and how a hidden state at such a position becomes a probability. Everything else — the
architecture check, the device and dtype, micro-batching, the ledger — lives here once.

Heads are applied by ttscale itself, from the checkpoint's weights, so that no checkpoint's
own Python code has to run: ``trust_remote_code`` stays off unless the user asks for it."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ttscale.compute import TokenCount
from ttscale.errors import ConfigError, ContextLengthError, ModelLoadError
from ttscale.hf_backend import check_device, import_backend, quiet_loading, resolve_dtype
from ttscale.rewards.base import ScoreBatch, check_scores
from ttscale.steps import Step

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class EncodedSolution:
    """A solution as the PRM reads it: ``positions[k]`` is the token index whose output
    gives step ``k``'s score."""

    input_ids: list[int]
    positions: list[int]


def resolve_checkpoint(path_or_name: str, format_name: str) -> Path:
    """A local folder as it is; a hub name (``Qwen/Qwen2.5-Math-PRM-7B``) through the Hugging
    Face cache, downloading it when the hub is reachable and allowed."""
    local = Path(path_or_name).expanduser()
    if local.exists() or path_or_name.count("/") != 1 or path_or_name.startswith((".", "~")):
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_name))
    except ImportError as exc:
        raise ModelLoadError("hub names need huggingface_hub: pip install 'ttscale[hf]'") from exc
    except Exception as exc:  # the hub client raises many kinds; all mean "not available"
        raise ModelLoadError(
            f"{format_name} checkpoint {path_or_name!r} is not a local folder and could not be "
            f"fetched from the hub ({type(exc).__name__}); download it where the hub is "
            "reachable and pass the folder") from exc


def read_config(path: str | Path, format_name: str) -> tuple[Path, dict[str, Any]]:
    """The checkpoint folder and its config.json, with errors that say what to pass."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelLoadError(
            f"PRM path {folder} does not exist; give a local folder holding the "
            f"{format_name} checkpoint (config.json, tokenizer and weights)")
    if not folder.is_dir():
        raise ModelLoadError(f"PRM path {folder} is a file; give the checkpoint's folder")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{folder} has no config.json; is it a Hugging Face checkpoint?")
    try:
        return folder, json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{config_file} is not valid JSON: {exc}") from exc


def check_architecture(config: dict[str, Any], folder: Path, format_name: str,
                       architectures: Sequence[str], model_types: Sequence[str]) -> None:
    """Refuse a checkpoint of another architecture before any generation: a PRM read in the
    wrong format gives plausible-looking but meaningless scores."""
    found = config.get("architectures") or []
    model_type = config.get("model_type")
    if model_type not in model_types or not set(found) & set(architectures):
        raise ConfigError(
            f"{folder} is a {model_type} model with architecture {', '.join(found) or 'unknown'}"
            f"; the {format_name} format expects {' or '.join(architectures)} "
            f"({'/'.join(model_types)}). Pick the format that matches the checkpoint "
            "(`ttscale prms` lists them)")


def load_head_weights(folder: Path, prefix: str) -> dict[str, Any]:
    """The checkpoint tensors whose names start with ``prefix`` (``score.``, ``v_head.``),
    from safetensors files (sharded or not) or a PyTorch ``.bin`` file."""
    torch, _ = import_backend("reading PRM weights")
    weights: dict[str, Any] = {}
    files = sorted(folder.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                    if name.startswith(prefix):
                        weights[name[len(prefix):]] = handle.get_tensor(name)
    else:
        for file in sorted(folder.glob("pytorch_model*.bin")):
            state = torch.load(file, map_location="cpu", weights_only=True)
            weights.update({k[len(prefix):]: v for k, v in state.items()
                            if k.startswith(prefix)})
    if not weights:
        raise ModelLoadError(f"{folder} holds no weights named {prefix}*; the checkpoint is "
                             "incomplete or not of this format")
    return weights


class HFProcessRewardModel(ABC):
    """A PRM checkpoint run in-process with transformers. Subclasses are the formats."""

    format_name: ClassVar[str]
    architectures: ClassVar[tuple[str, ...]]
    model_types: ClassVar[tuple[str, ...]]
    # True: the format needs the LM head (label-token formats); False: the bare backbone
    uses_lm_head: ClassVar[bool] = False
    pointwise = True

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "auto",
                 trust_remote_code: bool = False, max_batch_tokens: int = 16384) -> None:
        torch, transformers = import_backend("an in-process PRM")
        self._torch = torch
        folder, config = read_config(path, self.format_name)
        check_architecture(config, folder, self.format_name, self.architectures,
                           self.model_types)
        self.path = folder
        self.device = check_device(torch, device)
        self.dtype = resolve_dtype(torch, dtype, self.device)
        self.max_batch_tokens = max_batch_tokens
        self.name = f"{self.format_name}:{folder.name}"
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            folder, trust_remote_code=trust_remote_code)
        loader = (transformers.AutoModelForCausalLM if self.uses_lm_head
                  else transformers.AutoModel)
        try:
            with quiet_loading(transformers):
                model = loader.from_pretrained(folder, dtype=self.dtype,
                                               trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load the {self.format_name} checkpoint at "
                                 f"{folder}: {exc}") from exc
        model.to(self.device).eval()
        self.model = model
        self.context_length: int | None = config.get("max_position_embeddings")
        self.backbone = model.get_decoder() if self.uses_lm_head else model
        self._parameters = sum(p.numel() for p in model.parameters())
        self._lock = threading.Lock()
        self.load_head(folder, config)

    # -- what a format defines --------------------------------------------------------------
    @abstractmethod
    def load_head(self, folder: Path, config: dict[str, Any]) -> None:
        """Read the format's head (or label token ids) from the checkpoint."""

    @abstractmethod
    def encode(self, problem: str, steps: Sequence[str]) -> EncodedSolution:
        """Token ids of the PRM's input and the position read for each step."""

    @abstractmethod
    def read(self, hidden):
        """Hidden states at the read positions, ``[k, hidden]`` → probabilities ``[k]``."""

    # -- shared ---------------------------------------------------------------------------
    @property
    def parameters(self) -> int:
        return self._parameters

    async def score(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return await asyncio.to_thread(self.score_sync, problem, solutions)

    async def score_many(self, requests: Sequence[tuple[str, Sequence[Sequence[Step]]]]
                         ) -> list[ScoreBatch]:
        """Several problems' solutions in one set of forward passes (the scheduler merges
        concurrent ``score`` calls into this)."""
        return await asyncio.to_thread(self.score_many_sync, requests)

    def score_sync(self, problem: str, solutions: Sequence[Sequence[Step]]) -> ScoreBatch:
        return self.score_many_sync([(problem, solutions)])[0]

    def score_many_sync(self, requests: Sequence[tuple[str, Sequence[Sequence[Step]]]]
                        ) -> list[ScoreBatch]:
        encoded = [self._encode_all(problem, solutions) for problem, solutions in requests]
        with self._lock:
            scores = self.score_encoded([item for items in encoded for item in items])
        batches, at = [], 0
        for (_, solutions), items in zip(requests, encoded, strict=True):
            tokens = TokenCount(prompt=sum(len(item.input_ids) for item in items))
            batch = ScoreBatch(scores[at:at + len(items)], tokens)
            batches.append(check_scores(batch, solutions, self.name))
            at += len(items)
        return batches

    def _encode_all(self, problem: str, solutions: Sequence[Sequence[Step]]
                    ) -> list[EncodedSolution]:
        encoded = [self.encode(problem, [step.text for step in steps]) if steps
                   else EncodedSolution([], []) for steps in solutions]
        for k, (item, steps) in enumerate(zip(encoded, solutions, strict=True)):
            if len(item.positions) != len(steps):
                raise AssertionError(f"{self.format_name}: {len(item.positions)} read positions "
                                     f"for {len(steps)} steps")
            if self.context_length and len(item.input_ids) > self.context_length:
                # past its trained positions a PRM's scores mean nothing (and models with
                # learned position embeddings fail outright): refused, not truncated
                raise ContextLengthError(
                    f"PRM {self.name}: solution {k} is {len(item.input_ids)} tokens with its "
                    f"problem, past the PRM's context of {self.context_length} "
                    "(max_position_embeddings); lower --max-solution-tokens or use a PRM with "
                    "a longer context")
        return encoded

    def score_encoded(self, encoded: Sequence[EncodedSolution]) -> list[list[float]]:
        """Forward passes over length-sorted micro-batches; one score per read position."""
        torch = self._torch
        results: list[list[float]] = [[] for _ in encoded]
        order = sorted((i for i, item in enumerate(encoded) if item.positions),
                       key=lambda i: len(encoded[i].input_ids))
        with torch.inference_mode():
            for batch in _micro_batches(order, encoded, self.max_batch_tokens):
                hidden = self.hidden_at_positions([encoded[i] for i in batch])
                for i, rows in zip(batch, hidden, strict=True):
                    probs = self.read(rows.float())
                    results[i] = [_rounded_into_unit(float(p)) for p in probs]
        return results

    def hidden_at_positions(self, items: Sequence[EncodedSolution]) -> list:
        """Run the backbone on right-padded rows (padding after the text leaves every real
        position unchanged) and gather the last hidden state at each read position."""
        torch = self._torch
        width = max(len(item.input_ids) for item in items)
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, :len(item.input_ids)] = torch.tensor(item.input_ids)
            mask[row, :len(item.input_ids)] = 1
        output = self.backbone(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        states = output.last_hidden_state
        return [states[row, torch.tensor(item.positions, device=states.device)]
                for row, item in enumerate(items)]

    async def close(self) -> None:
        self.model = None
        self.backbone = None


def _rounded_into_unit(value: float) -> float:
    """A probability the model computed, with float rounding past 0 or 1 undone; NaN is left
    as it is, for ``check_scores`` to refuse naming the step (never read as a score)."""
    return value if math.isnan(value) else min(1.0, max(0.0, value))


def _micro_batches(order: list[int], encoded: Sequence[EncodedSolution],
                   max_tokens: int) -> list[list[int]]:
    """Group length-sorted rows so that rows × longest row stays under ``max_tokens``."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = len(encoded[i].input_ids)
        if current and width * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches

