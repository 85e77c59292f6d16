"""The default CPU engine: llama.cpp through llama-cpp-python's low-level API.

Why the low-level API: the high-level one gives log-probabilities only with ``logits_all``,
which makes sampling several times slower, and it decodes one sequence at a time. Here every
sample of every prefix in a call is decoded in one batch, each in its own KV sequence:

* the prefix shared by all prefixes of a call (the problem prompt) lives in sequence 0 and is
  kept between calls, so successive steps of a search reuse it;
* each prefix's own tokens are computed once and its ``n`` samples copy that KV state
  (``llama_memory_seq_cp``) instead of recomputing it;
* a finished sample's sequence is evicted at once.

``next_token_logprobs`` (LLM-as-judge) uses the same layout: the shared part of its prefixes in
sequence 0, each prefix's own tokens in a sequence of its own, one logits row per prefix.

Cached prompt tokens are reported per continuation exactly as computed: a token counts as
computed for the one continuation that paid for it and as cached for every other."""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

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
from ttscale.errors import ContextLengthError, EngineError, ModelLoadError

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SHARED_SEQ = 0
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


@dataclass
class _Sample:
    """One continuation being decoded in a KV sequence."""

    prefix_index: int
    sample_index: int
    slot: int
    position: int
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: FinishReason | None = None
    stop_string: str | None = None
    cut: int | None = None  # byte length of the text to keep when a stop string was hit

    @property
    def byte_length(self) -> int:
        return sum(len(p) for p in self.pieces)


@dataclass
class _Item:
    """A prefix (or a slice of its samples) decoded together in one wave."""

    prefix_index: int
    samples: range


class LlamaCppEngine(ThreadedEngine):
    """Batched, prefix-sharing llama.cpp policy engine (CPU by default).

    ``n_ctx`` is the size of the one KV cache that all sequences of a call share;
    ``n_seq_max`` bounds how many samples are decoded at once (calls with more are decoded in
    waves)."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        n_ctx: int = 32768,
        n_seq_max: int = 64,
        n_batch: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
    ) -> None:
        import llama_cpp as lc

        self._lc = lc
        embedded = model_path is None
        path = embedded_model_path() if embedded else check_gguf_path(model_path)
        self.path = path
        n_threads = n_threads or max(1, len(os.sched_getaffinity(0)))
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
        self.n_batch = n_batch
        ctx_params = lc.llama_context_default_params()
        ctx_params.n_ctx = n_ctx
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = min(512, n_batch)
        ctx_params.n_seq_max = self.n_seq_max
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        ctx_params.kv_unified = True  # one cache shared by all sequences: copies are free
        ctx_params.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            raise ModelLoadError(f"llama.cpp could not create a context of {n_ctx} tokens for "
                                 f"{path}; try a smaller n_ctx")
        self.n_ctx = lc.llama_n_ctx(self._ctx)
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch = lc.llama_batch_init(n_batch, 0, 1)
        self._add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
        self._lock = threading.Lock()
        self._cached: list[int] = []  # tokens held in the shared sequence
        self._pieces: dict[int, bytes] = {}
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


    async def close(self) -> None:
        self.free()


    def clear_cache(self) -> None:
        """Forget every cached prefix. The runner calls this before each problem: llama.cpp's
        reductions depend slightly on the KV cache's layout, so a problem's samples are
        reproducible bit for bit only from the same cache state (a resumed run then matches
        an uninterrupted one)."""
        with self._lock:
            self._lc.llama_memory_clear(self._memory, True)
            self._cached = []

    # -- tokens -------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool | None = None) -> list[int]:
        lc = self._lc
        data = text.encode("utf-8")
        capacity = len(data) + 8
        out = (lc.llama_token * capacity)()
        add = self._add_bos if add_bos is None else add_bos
        count = lc.llama_tokenize(self._vocab, data, len(data), out, capacity, add, True)
        if count < 0:  # buffer too small: -count is the size needed
            capacity = -count
            out = (lc.llama_token * capacity)()
            count = lc.llama_tokenize(self._vocab, data, len(data), out, capacity, add, True)
        return list(out[:count])

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._detokenize_one(token)
        return piece

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

    # -- decoding -----------------------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> dict[int, np.ndarray]:
        """Decode (token, position, sequence, want_logits) entries in chunks of ``n_batch``.
        Returns the logits rows, keyed by the entry's index in ``entries``."""
        lc, batch = self._lc, self._batch
        rows: dict[int, np.ndarray] = {}
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            for i, (token, position, seq, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = position
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
            batch.n_tokens = len(chunk)
            status = lc.llama_decode(self._ctx, batch)
            if status == 1:
                raise ContextLengthError(
                    f"the KV cache ({self.n_ctx} tokens) is full; lower max_tokens or the "
                    "number of samples per call, or give the engine a larger n_ctx")
            if status != 0:
                raise EngineError(f"llama_decode failed with status {status}")
            for i, (_, _, _, logits) in enumerate(chunk):
                if logits:
                    pointer = lc.llama_get_logits_ith(self._ctx, i)
                    rows[start + i] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        return rows

    def _sync_shared(self, shared: list[int]) -> int:
        """Make the shared sequence hold ``shared``; return how many tokens were reused."""
        reuse = 0
        for a, b in zip(self._cached, shared, strict=False):
            if a != b:
                break
            reuse += 1
        if reuse < len(self._cached):
            self._lc.llama_memory_seq_rm(self._memory, SHARED_SEQ, reuse, -1)
        self._cached = list(shared[:reuse])
        if reuse < len(shared):
            self._decode([(t, reuse + i, SHARED_SEQ, False)
                          for i, t in enumerate(shared[reuse:])])
        self._cached = list(shared)
        return reuse

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
        with self._lock:
            try:
                return self._extend_locked(prefixes, n, stop, max_tokens, temperature, top_p,
                                           seed, first_sample)
            except BaseException:
                # a failed call may leave partial sequences behind: start clean next time
                self._lc.llama_memory_clear(self._memory, True)
                self._cached = []
                raise

    def _tokenize_prefixes(self, prefixes: list[str], room: int) -> tuple[list[list[int]], int]:
        """Token lists of ``prefixes`` and the length of their shared part, which sequence 0
        then holds. ``room``: cache cells each prefix must leave free after itself."""
        token_lists = [self.tokenize(p) for p in prefixes]
        shortest = min(len(t) for t in token_lists)
        if shortest == 0:
            raise EngineError("cannot continue an empty prefix")
        longest = max(len(t) for t in token_lists)
        if longest > self.n_ctx - room:
            raise ContextLengthError(f"a prefix of {longest} tokens does not fit the context of "
                                     f"{self.n_ctx} tokens")
        # every prefix keeps at least its last token to compute, to get its next-token logits
        shared_length = min(_common_prefix_length(token_lists), shortest - 1)
        return token_lists, shared_length

    def _extend_locked(self, prefixes, n, stop, max_tokens, temperature, top_p, seed,
                       first_sample):
        token_lists, shared_length = self._tokenize_prefixes(prefixes, room=2)
        reused = self._sync_shared(token_lists[0][:shared_length])
        fresh_shared = shared_length - reused  # computed now, charged to the first continuation
        results: list[list[Continuation | None]] = [[None] * n for _ in prefixes]
        for wave in self._plan_waves(token_lists, n, shared_length, max_tokens):
            self._run_wave(wave, token_lists, results, shared_length, fresh_shared, n, stop,
                           max_tokens, temperature, top_p, seed, prefixes, first_sample)
            fresh_shared = 0
        return [[c for c in row if c is not None] for row in results]

    def next_token_logprobs_sync(self, prefixes: list[str],
                                 candidates: list[str]) -> list[NextTokenLogprobs]:
        """Log P(first token of each candidate | prefix), over the whole vocabulary. The
        prefixes' shared part goes to sequence 0 like extend's and is kept for the next call
        of either kind (a judge call after a policy call on another prompt recomputes it)."""
        ids = {c: self._first_token(c) for c in candidates}
        with self._lock:
            try:
                return self._next_token_locked(prefixes, ids)
            except BaseException:
                # as in extend_sync: leave no partial sequences behind
                self._lc.llama_memory_clear(self._memory, True)
                self._cached = []
                raise

    def _first_token(self, candidate: str) -> int:
        tokens = self.tokenize(candidate, add_bos=False)
        if not tokens:
            raise ValueError(f"candidate {candidate!r} has no tokens")
        return tokens[0]

    def _next_token_locked(self, prefixes: list[str],
                           ids: dict[str, int]) -> list[NextTokenLogprobs]:
        lc, memory = self._lc, self._memory
        token_lists, shared_length = self._tokenize_prefixes(prefixes, room=0)
        fresh_shared = shared_length - self._sync_shared(token_lists[0][:shared_length])
        # a prefix whose tokens start another one is read off that one's pass (a judge asks
        # about step k, then about step k + 1 after the same text): each chain is decoded
        # once, with logits kept at every member's last token
        chains = _prefix_chains(token_lists)
        heads = list(chains)
        results: list[NextTokenLogprobs | None] = [None] * len(prefixes)
        for wave in self._plan_prefix_waves([token_lists[h] for h in heads], shared_length):
            entries: list[tuple[int, int, int, bool]] = []
            reads: list[tuple[int, int, int]] = []  # (prefix, entry index, chain head)
            for slot, w in enumerate(wave, start=1):
                head = heads[w]
                lc.llama_memory_seq_cp(memory, SHARED_SEQ, slot, -1, -1)
                tokens = token_lists[head]
                ends = {len(token_lists[m]) - 1 for m in chains[head]}
                base = len(entries) - shared_length
                entries.extend((tokens[p], p, slot, p in ends)
                               for p in range(shared_length, len(tokens)))
                reads.extend((m, base + len(token_lists[m]) - 1, head) for m in chains[head])
            rows = self._decode(entries)
            for slot in range(1, len(wave) + 1):
                lc.llama_memory_seq_rm(memory, slot, -1, -1)
            for index, entry, head in reads:
                row = rows[entry].astype(np.float64)
                top = row.max()
                log_normaliser = top + np.log(np.exp(row - top).sum())
                prompt_tokens = len(token_lists[index])
                computed = 0  # each computed token is charged once: to its chain's head
                if index == head:
                    computed = prompt_tokens - shared_length + fresh_shared
                    fresh_shared = 0  # the shared part is charged to the first head only
                results[index] = NextTokenLogprobs(
                    logprobs={c: float(row[t] - log_normaliser) for c, t in ids.items()},
                    prompt_tokens=prompt_tokens,
                    cached_prompt_tokens=prompt_tokens - computed,
                )
        return [r for r in results if r is not None]

    def _plan_prefix_waves(self, token_lists: list[list[int]],
                           shared_length: int) -> list[list[int]]:
        """Prefix indices in order, cut into waves that fit the sequence slots and the cache."""
        slots = self.n_seq_max - 1
        waves: list[list[int]] = []
        wave: list[int] = []
        used_cells = 0
        for index, tokens in enumerate(token_lists):
            cells = len(tokens) - shared_length
            if wave and (len(wave) == slots or shared_length + used_cells + cells > self.n_ctx):
                waves.append(wave)
                wave, used_cells = [], 0
            wave.append(index)
            used_cells += cells
        if wave:
            waves.append(wave)
        return waves

    def _plan_waves(self, token_lists, n, shared_length, max_tokens) -> list[list[_Item]]:
        """Pack (prefix, samples) items into waves that fit the sequence slots and the cache."""
        slots = self.n_seq_max - 1
        items: list[_Item] = []
        for i, tokens in enumerate(token_lists):
            # an item must fit the cache on its own too: its prefix plus every sample at full
            # length (one sample always fits, its budget being capped by the context)
            size = max(1, min(slots, (self.n_ctx - len(tokens)) // (max_tokens + 1)))
            items.extend(_Item(i, range(j, min(n, j + size))) for j in range(0, n, size))
        waves: list[list[_Item]] = []
        wave: list[_Item] = []
        used_slots = used_cells = 0
        for item in items:
            cells = len(token_lists[item.prefix_index]) - shared_length + len(item.samples) * (
                max_tokens + 1)
            if wave and (used_slots + len(item.samples) > slots
                         or shared_length + used_cells + cells > self.n_ctx):
                waves.append(wave)
                wave, used_slots, used_cells = [], 0, 0
            wave.append(item)
            used_slots += len(item.samples)
            used_cells += cells
        if wave:
            waves.append(wave)
        return waves

    def _run_wave(self, wave, token_lists, results, shared_length, fresh_shared, n, stop,
                  max_tokens, temperature, top_p, seed, prefixes, first_sample) -> None:
        lc, memory = self._lc, self._memory
        next_slot = 1
        entries: list[tuple[int, int, int, bool]] = []
        last_entry: list[int] = []
        item_slots: list[int] = []
        for item in wave:
            slot = next_slot
            next_slot += len(item.samples)
            item_slots.append(slot)
            lc.llama_memory_seq_cp(memory, SHARED_SEQ, slot, -1, -1)
            tokens = token_lists[item.prefix_index]
            for position in range(shared_length, len(tokens)):
                entries.append((tokens[position], position, slot, position == len(tokens) - 1))
            last_entry.append(len(entries) - 1)
        rows = self._decode(entries)
        samples: list[_Sample] = []
        first_rows: list[np.ndarray] = []
        for item, slot, entry in zip(wave, item_slots, last_entry, strict=True):
            length = len(token_lists[item.prefix_index])
            for offset, j in enumerate(item.samples):
                if offset:
                    lc.llama_memory_seq_cp(memory, slot, slot + offset, -1, -1)
                # j indexes this call's results; the stream is the prefix's sample first_sample+j
                rng = sample_rng(seed, prefixes[item.prefix_index], first_sample + j)
                samples.append(_Sample(item.prefix_index, j, slot + offset, length, rng))
                first_rows.append(rows[entry])
        budget = [min(max_tokens, self.n_ctx - s.position - 1) for s in samples]
        stop_bytes = [s.encode("utf-8") for s in stop if s]
        active = list(range(len(samples)))
        logits = np.stack(first_rows)
        while active:
            tokens, logprobs = sample_rows(logits, [samples[i].rng for i in active],
                                           temperature, top_p)
            still: list[int] = []
            for row, index in enumerate(active):
                sample = samples[index]
                self._accept(sample, int(tokens[row]), float(logprobs[row]), stop_bytes,
                             budget[index])
                if sample.finish is None:
                    still.append(index)
                else:
                    lc.llama_memory_seq_rm(memory, sample.slot, -1, -1)
            active = still
            if not active:
                break
            step = [(samples[i].tokens[-1], samples[i].position, samples[i].slot, True)
                    for i in active]
            decoded = self._decode(step)
            logits = np.stack([decoded[k] for k in range(len(active))])
            for i in active:
                samples[i].position += 1
        for item in wave:
            prompt_tokens = len(token_lists[item.prefix_index])
            for sample in (s for s in samples if s.prefix_index == item.prefix_index
                           and s.sample_index in item.samples):
                computed = 0
                if sample.sample_index == item.samples.start:
                    computed = prompt_tokens - shared_length + fresh_shared
                    fresh_shared = 0
                results[item.prefix_index][sample.sample_index] = self._continuation(
                    sample, prompt_tokens, prompt_tokens - computed)
        for slot in range(1, next_slot):
            lc.llama_memory_seq_rm(memory, slot, -1, -1)

    def _accept(self, sample: _Sample, token: int, logprob: float, stop_bytes: list[bytes],
                budget: int) -> None:
        """Take a sampled token into a sample and decide whether the sample is finished."""
        if self._lc.llama_vocab_is_eog(self._vocab, token):
            sample.tokens.append(token)
            sample.finish = "eos"
            return
        sample.tokens.append(token)
        sample.logprobs.append(logprob)
        piece = self._piece(token)
        previous = sample.byte_length
        sample.pieces.append(piece)
        if stop_bytes:
            # look only at the bytes a new stop string could span: the new piece plus the
            # longest stop string's length before it
            window = max(0, previous - max(len(s) for s in stop_bytes) + 1)
            tail, tail_start = _tail(sample.pieces, window)
            hits = [(tail.find(s), s) for s in stop_bytes]
            hits = [(at, s) for at, s in hits if at >= 0]
            if hits:
                at, hit = min(hits)
                sample.cut = tail_start + at
                sample.finish = "stop"
                sample.stop_string = hit.decode("utf-8")
                return
        if len(sample.tokens) >= budget:
            sample.finish = "length"

    def _continuation(self, sample: _Sample, prompt_tokens: int, cached: int) -> Continuation:
        data = b"".join(sample.pieces)
        keep = len(data) if sample.cut is None else sample.cut
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        offsets: list[int] = []
        kept_logprobs: list[float] = []
        chars = 0
        consumed = 0
        for piece, logprob in zip(sample.pieces, sample.logprobs, strict=True):
            if consumed >= keep:  # tokens wholly inside or after the stop string are dropped
                break
            offsets.append(chars)
            kept_logprobs.append(logprob)
            chars += len(decoder.decode(piece[: max(0, keep - consumed)]))
            consumed += len(piece)
        text = data[:keep].decode("utf-8", errors="replace")
        return Continuation(
            text=text,
            finish_reason=sample.finish or "length",
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            generated_tokens=len(sample.tokens),
            token_logprobs=tuple(kept_logprobs),
            token_offsets=tuple(offsets),
            stop_string=sample.stop_string,
        )

    def free(self) -> None:
        lc = getattr(self, "_lc", None)
        if lc is None:
            return
        if getattr(self, "_batch", None) is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lc.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lc.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.free()
        except Exception:
            pass


def _tail(pieces: list[bytes], start: int) -> tuple[bytes, int]:
    """The bytes of ``pieces`` from byte ``start`` (rounded down to a piece), and where they
    begin."""
    total = sum(len(p) for p in pieces)
    taken: list[bytes] = []
    begin = total
    for piece in reversed(pieces):
        if begin <= start:
            break
        taken.append(piece)
        begin -= len(piece)
    return b"".join(reversed(taken)), begin


def _prefix_chains(token_lists: list[list[int]]) -> dict[int, list[int]]:
    """Group prefixes whose tokens begin a longer prefix's tokens under that longer one (the
    chain's head). Returns head index → member indices (the head included), heads in the
    order of first appearance."""
    order = sorted(range(len(token_lists)), key=lambda i: (-len(token_lists[i]), i))
    members: dict[int, list[int]] = {}
    for index in order:
        tokens = token_lists[index]
        for head in members:
            if token_lists[head][:len(tokens)] == tokens:
                members[head].append(index)
                break
        else:
            members[index] = [index]
    first = {head: min(group) for head, group in members.items()}
    return {head: members[head] for head in sorted(members, key=first.__getitem__)}


def _common_prefix_length(token_lists: list[list[int]]) -> int:
    first = token_lists[0]
    length = len(first)
    for tokens in token_lists[1:]:
        length = min(length, len(tokens))
        for i in range(length):
            if tokens[i] != first[i]:
                length = i
                break
    return length


_LOG_CALLBACK = None


def _log_callback():
    """Route llama.cpp's chatter to our logger (errors only) instead of stderr."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        import llama_cpp as lc

        @lc.llama_log_callback
        def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if level == GGML_LOG_LEVEL_ERROR:
                logger.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LOG_CALLBACK = forward
    return _LOG_CALLBACK
