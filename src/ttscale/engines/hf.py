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
built. How sampled tokens become text: :mod:`ttscale.engines.hf_text`; where the model comes
from: :mod:`ttscale.engines.hf_loading`."""

from __future__ import annotations

import inspect
import os
import threading
from typing import Any

from ttscale.engines.base import (
    Continuation,
    ModelInfo,
    NextTokenLogprobs,
    ThreadedEngine,
)
from ttscale.engines.hf_loading import eos_ids, load_model, resolve_source
from ttscale.engines.hf_text import DecodingSample, SampleText, new_sample
from ttscale.engines.sampling import sample_rng, sample_rows
from ttscale.errors import ConfigError, ContextLengthError, EngineError
from ttscale.hf_backend import check_device, import_backend, resolve_dtype


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
        source, gguf, name, self.path = resolve_source(model, gguf_file)
        self.tokenizer, self.model = load_model(transformers, source, gguf, torch_dtype,
                                                trust_remote_code)
        self.model.to(self.device).eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")  # what was loaded, as named
        self._lock = threading.Lock()
        parameters = inspect.signature(self.model.forward).parameters
        # transformers 5 renamed past_key_values to cache
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._keep_last = "logits_to_keep" in parameters
        config = self.model.config.get_text_config()
        self._eos = eos_ids(self.tokenizer, self.model)
        self._text = SampleText(self.tokenizer, self._eos)
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
                    results[sample.prefix_index][sample.sample_index] = self._text.continuation(
                        sample, prompt_tokens, cached)
        return [[c for c in row if c is not None] for row in results]

    def _new_sample(self, prefix: str, tokens: list[int], i: int, j: int, seed: int,
                    max_tokens: int, first_sample: int) -> DecodingSample:
        budget = max_tokens
        if self.context_length:
            budget = min(budget, self.context_length - len(tokens))
        # j indexes this call's results; the stream is the prefix's sample first_sample + j
        return new_sample(i, j, sample_rng(seed, prefix, first_sample + j), budget, tokens)

    def _run(self, samples: list[DecodingSample], token_lists: list[list[int]], stops: list[str],
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
                self._text.accept(samples[index], int(tokens[row]), float(logprobs[row]), stops)
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
