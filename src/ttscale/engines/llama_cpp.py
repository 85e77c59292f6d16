"""The default CPU engine: llama.cpp through llama-cpp-python's low-level API.

Why the low-level API: the high-level one gives log-probabilities only with ``logits_all``,
which makes sampling several times slower, and it decodes one sequence at a time. Here one
worker thread decodes every caller's samples together (:mod:`continuous_batching`): the
searches of many problems share each batch, and the KV cache is shared along the search tree
(:mod:`kv_tree`):

* a prefix's cached part — the few-shot examples, the problem, a beam's earlier steps — is
  copied from the sequence that holds it (``llama_memory_seq_cp``) instead of recomputed;
* each prefix's own tokens are computed once and its ``n`` samples copy that state;
* a finished sample's sequence stays as cache (its next step extends it) until evicted, least
  recently used first.

``next_token_logprobs`` (LLM-as-judge) reads one logits row per prefix through the same cache.

Cached prompt tokens are reported per continuation exactly as computed: a token counts as
computed for the one continuation that paid for it and as cached for every other."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ttscale.engines import FLASH_ATTN, EngineSpec
from ttscale.engines.base import (
    Continuation,
    ModelInfo,
    NextTokenLogprobs,
    validate_extend_args,
)
from ttscale.engines.batch_work import SampleSettings
from ttscale.engines.continuous_batching import ContinuousBatcher
from ttscale.engines.decode_backend import Entry
from ttscale.engines.embedded import EMBEDDED_NAME, embedded_model_path
from ttscale.engines.llama_library import (
    default_flash_attn,
    default_threads,
    import_llama_cpp,
)
from ttscale.errors import ContextLengthError, EngineError, ModelLoadError
from ttscale.registry import parse_choice

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
GGML_LOG_LEVEL_ERROR = 4


def check_gguf_path(path: str | os.PathLike) -> Path:
    """A clear error for a path that is missing or is not a GGUF file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist; give the path of a .gguf file "
                             "or leave --model out to use the embedded SmolLM2-135M")
    if not path.is_file():
        raise ModelLoadError(f"model path {path} is a folder, not a .gguf file")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelLoadError(
                f"{path} is not a GGUF file (no GGUF header); convert it with llama.cpp's "
                "convert_hf_to_gguf.py, or use --engine hf for a Hugging Face model folder"
            )
    return path


class LlamaCppEngine:
    """Batched, prefix-sharing llama.cpp policy engine (CPU by default).

    ``n_ctx`` is the size of the one KV cache all sequences share; ``n_seq_max`` how many
    sequences (live samples and cached prefixes) it holds; ``batch_samples`` how many samples
    decode at once at most; ``idle_cells`` how many cells finished sequences may keep for
    reuse (default 8192 or half the cache, whichever is less: idle cells slow attention).

    ``rows_per_call`` bounds the tokens of one ``llama_decode`` call. llama.cpp's CPU kernels
    compute a row the same way in any call of 2 to 16 rows; a larger call takes another
    matmul path whose rounding differs (and which is no faster on a CPU), and a one-row call
    with several threads attends another way (the decode loop pads it with a throwaway row).
    So what a sample generates does not depend on what else is decoded with it: a run gives
    the same records whether its problems run at once or one by one, cached or not (with the
    flash-attention kernel, the default: see ``flash_attn``). Raise it on a GPU build, where
    other kernels apply.

    ``flash_attn``: llama.cpp's attention kernel, ``"auto"`` (llama.cpp's choice: its
    flash-attention kernel, on a CPU too), ``"on"`` or ``"off"``; None: ``$TTSCALE_FLASH_ATTN``,
    else ``"auto"``. The flash kernel sums over the cells a row attends to alone, so a row's
    numbers do not depend on where its cells sit in the cache or how many cells the cache
    holds; that is what makes a sample the same cached or not. The plain kernel multiplies
    over the whole cache, and its rounding follows the cache's size: a run is then
    reproducible from the same start (``--parallel 1``) but not across cache states. On a
    CPU the plain kernel decoded faster while the cache held a few thousand cells
    (``benchmarks/results/attention.md``)."""

    batches_across_calls = True  # concurrent calls join one running batch

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        n_ctx: int = EngineSpec.n_ctx,
        n_seq_max: int = 256,
        batch_samples: int = 64,
        rows_per_call: int = 16,
        n_threads: int | None = None,
        n_gpu_layers: int = EngineSpec.n_gpu_layers,
        idle_cells: int | None = None,
        flash_attn: str | None = None,
    ) -> None:
        flash_attn = parse_choice("flash_attn", flash_attn or default_flash_attn(), FLASH_ATTN)
        lc = import_llama_cpp()

        self._lc = lc
        self._batcher: ContinuousBatcher | None = None
        embedded = model_path is None
        path = embedded_model_path() if embedded else check_gguf_path(model_path)
        self.path = path
        n_threads = n_threads or default_threads()
        lc.llama_backend_init()
        lc.llama_log_set(_log_callback(), ctypes.c_void_p(0))
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        self._model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {path}; is it a complete GGUF file?")
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self.n_seq_max = min(n_seq_max, lc.llama_max_parallel_sequences())
        self.rows_per_call = rows_per_call
        ctx_params = _context_params(lc, n_ctx, rows_per_call, self.n_seq_max, n_threads)
        ctx_params.flash_attn_type = {"on": lc.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                                      "off": lc.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                                      "auto": lc.LLAMA_FLASH_ATTN_TYPE_AUTO}[flash_attn]
        self.flash_attn = flash_attn
        self._ctx = lc.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            raise ModelLoadError(f"llama.cpp could not create a context of {n_ctx} tokens for "
                                 f"{path}; try a smaller n_ctx")
        self.n_ctx = lc.llama_n_ctx(self._ctx)
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch = lc.llama_batch_init(ctx_params.n_batch, 0, 1)
        self._add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
        self._pieces: dict[int, bytes] = {}
        self._batcher = ContinuousBatcher(self, self.n_seq_max,
                                          min(batch_samples, self.n_seq_max), idle_cells,
                                          rows_per_call=rows_per_call)
        template = lc.llama_model_chat_template(self._model, None)
        self._info = ModelInfo(
            name=EMBEDDED_NAME if embedded else (self._metadata("general.name") or path.stem),
            parameters=int(lc.llama_model_n_params(self._model)),
            context_length=int(lc.llama_model_n_ctx_train(self._model)),
            chat_template=template.decode("utf-8") if template else None,
            extra={"path": str(path), "engine": "llama.cpp"},
        )

    # -- the protocol -----------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def stats(self) -> dict[str, int]:
        """Counters of the decode loop: prompt tokens computed, tokens generated, batches."""
        return dict(self._batcher.stats) if self._batcher else {}

    async def extend(self, prefixes: Sequence[str], n: int, stop: Sequence[str],
                     max_tokens: int, temperature: float, top_p: float, seed: int,
                     first_sample: int = 0) -> list[list[Continuation]]:
        # no thread per call: the request joins the decode loop's next batch, together with
        # every call made in the same turn of the event loop
        future = self._submit_extend(prefixes, n, stop, max_tokens, temperature, top_p, seed,
                                     first_sample, staged=True)
        return await self._flushed(future)

    async def next_token_logprobs(self, prefixes: Sequence[str],
                                  candidates: Sequence[str]) -> list[NextTokenLogprobs]:
        return await self._flushed(self._submit_reads(prefixes, candidates, staged=True))

    async def _flushed(self, future):
        """Await a staged call; the event loop's next turn hands all staged calls over at
        once, so which calls share a batch does not depend on thread timing."""
        asyncio.get_running_loop().call_soon(self._flush)  # the first one hands all over
        return await asyncio.wrap_future(future)

    def _flush(self) -> None:
        if self._batcher is not None:
            self._batcher.flush()

    async def close(self) -> None:
        self.free()

    def clear_cache(self) -> None:
        """Forget every cached prefix, so that what follows starts from an empty cache."""
        self._batcher.clear()

    def extend_sync(self, prefixes: list[str], n: int, stop: list[str], max_tokens: int,
                    temperature: float, top_p: float, seed: int,
                    first_sample: int = 0) -> list[list[Continuation]]:
        return self._submit_extend(prefixes, n, stop, max_tokens, temperature, top_p, seed,
                                   first_sample).result()

    def next_token_logprobs_sync(self, prefixes: list[str],
                                 candidates: list[str]) -> list[NextTokenLogprobs]:
        """Log P(first token of each candidate | prefix), over the whole vocabulary."""
        return self._submit_reads(prefixes, candidates).result()

    def _submit_extend(self, prefixes, n, stop, max_tokens, temperature, top_p, seed,
                       first_sample, staged=False):
        validate_extend_args(prefixes, n, max_tokens, temperature, top_p, first_sample)
        if isinstance(stop, str):
            raise TypeError("stop must be a list of strings, not one string")
        settings = SampleSettings(n, first_sample, tuple(s.encode("utf-8") for s in stop if s),
                                  max_tokens, temperature, top_p, seed)
        return self._live_batcher().submit(self._tokenized(prefixes, room=2), settings,
                                           staged=staged)

    def _submit_reads(self, prefixes, candidates, staged=False):
        if isinstance(prefixes, str) or isinstance(candidates, str):
            raise TypeError("prefixes and candidates must be lists of strings, not one string")
        ids = {c: self._first_token(c) for c in candidates}
        return self._live_batcher().submit(self._tokenized(prefixes, room=0), None, ids,
                                           staged=staged)

    def _live_batcher(self) -> ContinuousBatcher:
        if self._batcher is None or self._ctx is None:
            raise EngineError("the engine was closed")
        return self._batcher

    def _tokenized(self, prefixes: Sequence[str], room: int) -> list[tuple[str, list[int]]]:
        """Each prefix with its tokens, checked: not empty, and leaving ``room`` cells."""
        out = []
        for prefix in prefixes:
            tokens = self.tokenize(prefix)
            if not tokens:
                raise EngineError("cannot continue an empty prefix")
            if len(tokens) > self.n_ctx - room:
                raise ContextLengthError(f"a prefix of {len(tokens)} tokens does not fit the "
                                         f"context of {self.n_ctx} tokens")
            out.append((prefix, tokens))
        return out

    def _first_token(self, candidate: str) -> int:
        tokens = self.tokenize(candidate, add_bos=False)
        if not tokens:
            raise ValueError(f"candidate {candidate!r} has no tokens")
        return tokens[0]

    # -- tokens -------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool | None = None) -> list[int]:
        return tokenize(self._lc, self._vocab, text, self._add_bos if add_bos is None
                        else add_bos)

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._detokenize_one(token)
        return piece

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self._vocab, token))

    def _detokenize_one(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self._lc.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._lc.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def _metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(512)
        size = self._lc.llama_model_meta_val_str(self._model, key.encode(), buffer, 512)
        return buffer.value.decode("utf-8", "replace") if size >= 0 else None

    # -- the decode backend (called from the decode loop's thread only) ----------------------
    def decode(self, entries: Sequence[Entry]) -> tuple[int, np.ndarray]:
        lc, batch = self._lc, self._batch
        outputs = 0
        for i, (token, position, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
            outputs += logits
        batch.n_tokens = len(entries)
        status = lc.llama_decode(self._ctx, batch)
        if status != 0 or not outputs:
            return status, np.empty((0, self.n_vocab), dtype=np.float32)
        # the rows of the entries that asked for logits, in batch order (a view: valid until
        # the next decode)
        return status, np.ctypeslib.as_array(lc.llama_get_logits(self._ctx),
                                             shape=(outputs, self.n_vocab))

    def seq_copy(self, source: int, target: int, start: int, end: int) -> None:
        self._lc.llama_memory_seq_cp(self._memory, source, target, start, end)

    def seq_remove(self, seq: int, start: int) -> None:
        self._lc.llama_memory_seq_rm(self._memory, seq, start, -1)

    def memory_clear(self) -> None:
        self._lc.llama_memory_clear(self._memory, True)

    def free(self) -> None:
        lc = getattr(self, "_lc", None)
        if lc is None:
            return
        batcher = getattr(self, "_batcher", None)
        if batcher is not None:
            batcher.stop()
            self._batcher = None
        free_handles(self)

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.free()
        except Exception:
            pass


def _context_params(lc, n_ctx: int, rows_per_call: int, n_seq_max: int, n_threads: int):
    """The llama.cpp context settings: one KV cache of ``n_ctx`` cells for every sequence."""
    ctx_params = lc.llama_context_default_params()
    ctx_params.n_ctx = n_ctx
    # llama.cpp reserves one output per sequence: the batch must hold that many
    ctx_params.n_batch = max(rows_per_call, n_seq_max)
    ctx_params.n_ubatch = min(512, ctx_params.n_batch)
    ctx_params.n_seq_max = n_seq_max
    ctx_params.n_threads = n_threads
    ctx_params.n_threads_batch = n_threads
    ctx_params.kv_unified = True  # one cache shared by all sequences: copies are free
    ctx_params.no_perf = True
    return ctx_params


def tokenize(lc, vocab, text: str, add_bos: bool) -> list[int]:
    """Token ids of ``text`` (special tokens parsed), with BOS when ``add_bos``."""
    data = text.encode("utf-8")
    capacity = len(data) + 8
    out = (lc.llama_token * capacity)()
    count = lc.llama_tokenize(vocab, data, len(data), out, capacity, add_bos, True)
    if count < 0:  # buffer too small: -count is the size needed
        capacity = -count
        out = (lc.llama_token * capacity)()
        count = lc.llama_tokenize(vocab, data, len(data), out, capacity, add_bos, True)
    return list(out[:count])


def free_handles(owner) -> None:
    """Free an owner's ``_batch``, ``_ctx`` and ``_model`` (in that order), once."""
    lc = owner._lc
    if getattr(owner, "_batch", None) is not None:
        lc.llama_batch_free(owner._batch)
        owner._batch = None
    if getattr(owner, "_ctx", None):
        lc.llama_free(owner._ctx)
        owner._ctx = None
    if getattr(owner, "_model", None):
        lc.llama_model_free(owner._model)
        owner._model = None


_LOG_CALLBACK = None


def _log_callback():
    """Route llama.cpp's chatter to our logger (errors only) instead of stderr."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        lc = import_llama_cpp()

        @lc.llama_log_callback
        def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if level == GGML_LOG_LEVEL_ERROR:
                logger.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LOG_CALLBACK = forward
    return _LOG_CALLBACK
