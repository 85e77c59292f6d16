"""A model's last hidden states at chosen positions, through llama.cpp: the features a value
head reads. Runs in the default install (no torch), on any GGUF, on its own context in
embeddings mode (no pooling, so every requested position gives its own vector: the final
normalised hidden state, the one the output layer reads)."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence

import numpy as np

from ttscale.engines.embedded import EMBEDDED_NAME, embedded_model_path
from ttscale.engines.llama_cpp import _log_callback, check_gguf_path, free_handles, tokenize
from ttscale.engines.llama_library import default_threads, import_llama_cpp
from ttscale.errors import ContextLengthError, ModelLoadError


class LlamaHiddenStates:
    """``hidden_states(tokens, positions)``: one ``n_embd`` vector per position, computed
    in one pass over the tokens. Thread-safe: calls take turns on the one context."""

    def __init__(self, model_path: str | os.PathLike | None = None, *, n_ctx: int = 4096,
                 n_threads: int | None = None) -> None:
        lc = import_llama_cpp()

        self._lc = lc
        self.embedded = model_path is None
        self.path = embedded_model_path() if self.embedded else check_gguf_path(model_path)
        lc.llama_backend_init()
        lc.llama_log_set(_log_callback(), ctypes.c_void_p(0))
        self._model = lc.llama_model_load_from_file(str(self.path).encode(),
                                                    lc.llama_model_default_params())
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {self.path}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_embd = lc.llama_model_n_embd(self._model)
        self.parameters = int(lc.llama_model_n_params(self._model))
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_ctx
        params.n_ubatch = min(512, n_ctx)
        params.n_seq_max = 1
        threads = n_threads or default_threads()
        params.n_threads = params.n_threads_batch = threads
        params.embeddings = True
        params.pooling_type = lc.LLAMA_POOLING_TYPE_NONE
        params.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise ModelLoadError(f"llama.cpp could not create an embeddings context for "
                                 f"{self.path}")
        self.n_ctx = lc.llama_n_ctx(self._ctx)
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch = lc.llama_batch_init(self.n_ctx, 0, 1)
        self._add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
        self._lock = threading.Lock()
        self.name = EMBEDDED_NAME if self.embedded else self.path.stem

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return tokenize(self._lc, self._vocab, text, add_bos and self._add_bos)

    def hidden_states(self, tokens: Sequence[int], positions: Sequence[int]) -> np.ndarray:
        """The final hidden state at each of ``positions`` (indices into ``tokens``), as a
        float32 array of shape (len(positions), n_embd)."""
        if len(tokens) > self.n_ctx:
            raise ContextLengthError(f"a scored text of {len(tokens)} tokens is longer than "
                                     f"the value head's context ({self.n_ctx})")
        if any(not 0 <= p < len(tokens) for p in positions):
            raise ValueError(f"positions {list(positions)} fall outside {len(tokens)} tokens")
        lc, batch = self._lc, self._batch
        wanted = set(positions)
        with self._lock:
            lc.llama_memory_clear(self._memory, True)
            for i, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i in wanted
            batch.n_tokens = len(tokens)
            if lc.llama_decode(self._ctx, batch) != 0:
                raise ModelLoadError("llama.cpp failed to compute hidden states")
            rows = np.empty((len(positions), self.n_embd), dtype=np.float32)
            for row, position in enumerate(positions):
                pointer = lc.llama_get_embeddings_ith(self._ctx, position)
                rows[row] = np.ctypeslib.as_array(pointer, shape=(self.n_embd,))
        return rows

    def close(self) -> None:
        if getattr(self, "_lc", None) is not None:
            free_handles(self)

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass

