"""A policy engine on Hugging Face transformers (PyTorch), for CPU or one CUDA GPU.

It runs its own decode loop rather than ``model.generate`` so that every sample draws its
tokens from its own random stream, seeded from ``(seed, prefix, j)`` as in the llama.cpp
engine, with the same sampler (``sample_rows``); the two engines thus sample alike, up to
their numerics. Within a call:

* rows are decoded in micro-batches of at most ``max_batch`` samples, left-padded, with the
  position ids read from the attention mask;
* each prefix of a micro-batch is prefilled once and its KV cache copied to its samples, so its
  tokens are charged as computed to its first sample there and as cached to the others;
* a finished sample leaves the batch at once.

Nothing is kept between calls, so results do not depend on what ran before (no
``clear_cache`` is needed). torch and transformers are imported only when an engine is
built."""

from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ttscale.engines.base import (
    Continuation,
    FinishReason,
    ModelInfo,
    NextTokenLogprobs,
    ThreadedEngine,
)
from ttscale.engines.embedded import EMBEDDED_NAME, embedded_model_path
from ttscale.engines.sampling import sample_rng, sample_rows
from ttscale.errors import ConfigError, ContextLengthError, EngineError, ModelLoadError
from ttscale.hf_backend import (
    check_device,
    import_backend,
    quiet_loading,
    resolve_dtype,
)

GGUF_MAGIC = b"GGUF"
# prompt tokens decoded before the first new token, so that a tokenizer which drops a leading
# space at the start of a text (SentencePiece) keeps it at the start of a continuation
DETOKENIZE_CONTEXT = 6
# added tokens that end a turn or a document, which llama.cpp also stops at although a model's
# config may name only one of them as its EOS
END_MARKERS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
               "<end_of_turn>", "<|end|>", "<EOT>")


@dataclass
class _Sample:
    """One continuation being decoded: its tokens, its text so far and its bookkeeping."""

    prefix_index: int
    sample_index: int
    rng: np.random.Generator
    budget: int
    context: list[int]  # the last prompt tokens, then the generated ones, for detokenizing
    read: int  # tokens of ``context`` whose text is in ``text``
    start: int = 0  # where the detokenizing window starts in ``context``
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None
    stop_string: str | None = None
    cut: int | None = None  # length of the text to keep when a stop string was hit


class HFEngine(ThreadedEngine):
    """Batched policy engine on a transformers causal LM.

    ``model`` is a local model folder (with ``config.json``), a ``.gguf`` file (dequantized by
    transformers), a Hugging Face Hub name, or ``None`` for the embedded SmolLM2-135M GGUF.
    ``gguf_file`` names a GGUF file instead (inside ``model`` when relative)."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        gguf_file: str | os.PathLike | None = None,
        dtype: str = "auto",
        device: str = "cpu",
        trust_remote_code: bool = False,
        max_batch: int = 64,
    ) -> None:
        torch, transformers = import_backend("the hf engine")
        self._torch = torch
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
        self.device = check_device(torch, device)
        torch_dtype = resolve_dtype(torch, dtype, self.device)
        self.max_batch = max_batch
        source, gguf, name, self.path = _resolve(model, gguf_file)
        kwargs: dict[str, Any] = {}
        if gguf is not None:
            kwargs["gguf_file"] = gguf
        if trust_remote_code:  # only when asked: it runs the model repository's own code
            kwargs["trust_remote_code"] = True
        try:
            with quiet_loading(transformers):
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
                self.model = transformers.AutoModelForCausalLM.from_pretrained(
                    source, dtype=torch_dtype, **kwargs)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
            raise ModelLoadError(_load_failure(source, gguf, error)) from error
        self.model.to(self.device).eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")  # what was loaded, as named
        self._lock = threading.Lock()
        parameters = inspect.signature(self.model.forward).parameters
        # transformers 5 renamed past_key_values to cache
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._keep_last = "logits_to_keep" in parameters
        config = self.model.config.get_text_config()
        self._eos = _eos_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id  # any id will do: padded positions are masked
        self._pad = pad if pad is not None else min(self._eos, default=0)
        context = getattr(config, "max_position_embeddings", None)
        self.context_length = int(context) if context else None
        template = getattr(self.tokenizer, "chat_template", None)
        self._info = ModelInfo(
            name=name,
            parameters=sum(p.numel() for p in self.model.parameters()),
            context_length=self.context_length,
            chat_template=template if isinstance(template, str) else None,
            extra={"engine": "hf", "path": self.path, "dtype": self.dtype,
                   "device": str(self.device)},
        )

    # -- the protocols --------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info



    async def close(self) -> None:
        with self._lock:
            self.model = None
            if self.device.type == "cuda":
                self._torch.cuda.empty_cache()

    # -- tokens -----------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """A prefix's tokens, with the special tokens (BOS) the model's tokenizer adds."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)

    # -- forward passes ---------------------------------------------------------------------
    def _forward(self, ids, mask, positions, cache=None):
        """The last position's logits (float32) and the KV cache."""
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask,
                                  "position_ids": positions, "use_cache": True}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        if self._keep_last:  # the vocabulary-sized logits of earlier positions are not needed
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = out.past_key_values
        return out.logits[:, -1, :].float(), cache

    def _prefill(self, token_lists: list[list[int]]):
        """Left-pad and run prefixes; returns their last logits, cache and attention mask."""
        torch = self._torch
        width = max(len(t) for t in token_lists)
        ids = torch.full((len(token_lists), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(token_lists), width), dtype=torch.long)
        for row, tokens in enumerate(token_lists):
            ids[row, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
            mask[row, width - len(tokens):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, positions)
        return logits, cache, mask

    def _check_prefixes(self, token_lists: list[list[int]]) -> None:
        if self.model is None:
            raise EngineError("the engine is closed")
        if min(len(t) for t in token_lists) == 0:
            raise EngineError("cannot continue an empty prefix")
        longest = max(len(t) for t in token_lists)
        if self.context_length and longest >= self.context_length:
            raise ContextLengthError(f"a prefix of {longest} tokens does not fit the context of "
                                     f"{self.context_length} tokens")

    # -- scoring ----------------------------------------------------------------------------
    def next_token_logprobs_sync(self, prefixes: list[str],
                                 candidates: list[str]) -> list[NextTokenLogprobs]:
        results: list[NextTokenLogprobs] = []
        with self._lock, self._torch.inference_mode():
            token_lists = [self.tokenize(p) for p in prefixes]
            ids: dict[str, int] = {}
            for candidate in candidates:
                tokens = self.tokenizer(candidate, add_special_tokens=False)["input_ids"]
                if not tokens:
                    raise ValueError(f"candidate {candidate!r} encodes to no token")
                ids[candidate] = tokens[0]
            self._check_prefixes(token_lists)
            for start in range(0, len(token_lists), self.max_batch):
                chunk = token_lists[start:start + self.max_batch]
                logits, _, _ = self._prefill(chunk)
                logprobs = self._torch.log_softmax(logits, dim=-1).cpu().numpy()
                for row, tokens in zip(logprobs, chunk, strict=True):
                    results.append(NextTokenLogprobs(
                        {c: float(row[i]) for c, i in ids.items()}, prompt_tokens=len(tokens)))
        return results

    # -- generation -------------------------------------------------------------------------
    def extend_sync(
        self,
        prefixes: list[str],
        n: int,
        stop: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        first_sample: int = 0,
    ) -> list[list[Continuation]]:
        stops = [s for s in stop if s]
        results: list[list[Continuation | None]] = [[None] * n for _ in prefixes]
        rows = [(i, j) for i in range(len(prefixes)) for j in range(n)]
        with self._lock, self._torch.inference_mode():
            # tokenizing under the lock too: a fast tokenizer is not safe across threads
            token_lists = [self.tokenize(p) for p in prefixes]
            self._check_prefixes(token_lists)
            for start in range(0, len(rows), self.max_batch):
                samples = [self._new_sample(prefixes[i], token_lists[i], i, j, seed, max_tokens,
                                            first_sample)
                           for i, j in rows[start:start + self.max_batch]]
                self._run(samples, token_lists, stops, temperature, top_p)
                seen: set[int] = set()
                for sample in samples:
                    prompt_tokens = len(token_lists[sample.prefix_index])
                    # the prefix was computed once in this micro-batch, for its first sample
                    cached = prompt_tokens if sample.prefix_index in seen else 0
                    seen.add(sample.prefix_index)
                    results[sample.prefix_index][sample.sample_index] = self._continuation(
                        sample, prompt_tokens, cached)
        return [[c for c in row if c is not None] for row in results]

    def _new_sample(self, prefix: str, tokens: list[int], i: int, j: int, seed: int,
                    max_tokens: int, first_sample: int) -> _Sample:
        budget = max_tokens
        if self.context_length:
            budget = min(budget, self.context_length - len(tokens))
        context = tokens[-DETOKENIZE_CONTEXT:]
        # j indexes this call's results; the stream is the prefix's sample first_sample + j
        rng = sample_rng(seed, prefix, first_sample + j)
        return _Sample(i, j, rng, budget, list(context), len(context))

    def _run(self, samples: list[_Sample], token_lists: list[list[int]], stops: list[str],
             temperature: float, top_p: float) -> None:
        """Decode one micro-batch of samples until each is finished."""
        torch = self._torch
        groups = list(dict.fromkeys(s.prefix_index for s in samples))
        logits, cache, mask = self._prefill([token_lists[i] for i in groups])
        # each prefix's KV rows, copied to its samples
        rows = torch.tensor([groups.index(s.prefix_index) for s in samples], device=self.device)
        if len(groups) < len(samples):
            cache.batch_select_indices(rows)
            logits, mask = logits[rows], mask[rows]
        positions = torch.tensor([[len(token_lists[s.prefix_index])] for s in samples],
                                 device=self.device)
        active = list(range(len(samples)))
        while True:
            tokens, logprobs = sample_rows(logits.cpu().numpy(), [samples[i].rng for i in active],
                                           temperature, top_p)
            keep = []
            for row, index in enumerate(active):
                self._accept(samples[index], int(tokens[row]), float(logprobs[row]), stops)
                if samples[index].finish is None:
                    keep.append(row)
            if not keep:
                return
            if len(keep) < len(active):  # finished samples leave the batch
                chosen = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(chosen)
                mask, positions = mask[chosen], positions[chosen]
                active, tokens = [active[k] for k in keep], tokens[keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            ids = torch.as_tensor(tokens, dtype=torch.long, device=self.device)[:, None]
            logits, cache = self._forward(ids, mask, positions, cache)
            positions = positions + 1

    def _accept(self, sample: _Sample, token: int, logprob: float, stops: list[str]) -> None:
        """Take a sampled token into a sample and decide whether the sample is finished."""
        sample.tokens.append(token)
        if token in self._eos:  # like llama.cpp: counted as generated, with no text or logprob
            sample.finish = "eos"
            return
        sample.logprobs.append(logprob)
        sample.offsets.append(len(sample.text))
        sample.context.append(token)
        previous = len(sample.text)
        sample.text += self._new_text(sample)
        if stops and len(sample.text) > previous:
            # a new stop string ends in the new text, so starts at most its length before it
            window = max(0, previous - max(len(s) for s in stops) + 1)
            hits = [(at, s) for s in stops if (at := sample.text.find(s, window)) >= 0]
            if hits:
                sample.cut, sample.stop_string = min(hits)
                sample.finish = "stop"
                return
        if len(sample.tokens) >= sample.budget:
            sample.finish = "length"

    def _new_text(self, sample: _Sample, final: bool = False) -> str:
        """The text that the tokens after ``read`` add. Detokenizing a window that starts a few
        tokens back keeps the spaces and merges that depend on the tokens before; text that
        ends in an incomplete character waits for the next token (unless ``final``)."""
        window = sample.context[sample.start:]
        before = self._decode(window[:sample.read - sample.start])
        after = self._decode(window)
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        sample.start, sample.read = sample.read, len(sample.context)
        return after[len(before):]

    def _continuation(self, sample: _Sample, prompt_tokens: int, cached: int) -> Continuation:
        if sample.cut is None and sample.read < len(sample.context):
            sample.text += self._new_text(sample, final=True)  # a trailing partial character
        keep = len(sample.text) if sample.cut is None else sample.cut
        # tokens that start inside or after the stop string are dropped
        kept = sum(1 for offset in sample.offsets if offset < keep)
        return Continuation(
            text=sample.text[:keep],
            finish_reason=sample.finish or "length",
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            generated_tokens=len(sample.tokens),
            token_logprobs=tuple(sample.logprobs[:kept]),
            token_offsets=tuple(sample.offsets[:kept]),
            stop_string=sample.stop_string,
        )


# -- loading ---------------------------------------------------------------------------------
def _resolve(model, gguf_file) -> tuple[str, str | None, str, str]:
    """What to pass to ``from_pretrained``: the model folder (or Hub name), the GGUF file (or
    None), the model's display name and the path reported in ``ModelInfo``."""
    if model is None and gguf_file is None:
        path = embedded_model_path()
        return str(path.parent), path.name, EMBEDDED_NAME, str(path)
    if gguf_file is None and _looks_local(model):
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path {path} does not exist; give a Hugging Face model "
                                 "folder (with config.json), a .gguf file or a Hub name")
        if path.is_file():
            gguf_file, model = path, None
        elif not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} holds no config.json, so it is not a Hugging Face model "
                                 "folder; give the folder that save_pretrained wrote, or a .gguf "
                                 "file")
        else:
            return str(path), None, path.name, str(path)
    if gguf_file is None:  # a Hub name
        return str(model), None, str(model), str(model)
    path = Path(gguf_file).expanduser()
    if model is not None and not path.is_absolute():
        path = Path(model).expanduser() / path
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelLoadError(f"{path} is not a GGUF file (no GGUF header) nor a model folder")
    return str(path.parent), path.name, path.stem, str(path)


def _looks_local(model) -> bool:
    """A path rather than a Hub name ("org/name"): it exists, or is written like a path."""
    text = os.fspath(model)
    return (not isinstance(model, str) or Path(text).expanduser().exists()
            or text.startswith((os.sep, ".", "~")) or text.endswith(".gguf")
            or text.count("/") > 1)


def _offline() -> bool:
    return any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _load_failure(source: str, gguf: str | None, error: Exception) -> str:
    """One line saying why transformers could not load the model and what to do."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if gguf is None and not Path(source).exists():
        if _offline():
            return (f"{source!r} is not a local folder and is not in the Hugging Face cache, and "
                    f"HF_HUB_OFFLINE is set: download it first (`hf download {source}`), give a "
                    "local folder, or unset HF_HUB_OFFLINE")
        return f"could not load {source!r} from the Hugging Face Hub: {detail}"
    what = f"{source}/{gguf}" if gguf else source
    return f"transformers could not load {what}: {detail}"


def _eos_ids(tokenizer, model) -> set[int]:
    """Every token that ends a sequence: the tokenizer's, the configs' and the end markers."""
    added = {token.content: i for i, token in tokenizer.added_tokens_decoder.items()}
    ids = {added[marker] for marker in END_MARKERS if marker in added}
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None),
                  model.config.get_text_config().eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids
