"""Token sampling from raw logits, vectorised over the sequences of a batch, and the random
stream of each sample.

Each row has its own random generator, so a sample's tokens do not depend on which other
sequences share its batch. Log-probabilities are those of the untempered distribution. A
sample's stream (in process) or seed (for a server) depends on ``(seed, prefix, index)`` alone,
so every engine draws sample ``j`` of a prefix alike whatever else it is asked for."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np

# Seeds are kept below 2**31: some servers store them in a signed 32-bit int.
_SEED_MODULUS = 2**31 - 1


def sample_rows(
    logits: np.ndarray,
    rngs: Sequence[np.random.Generator],
    temperature: float,
    top_p: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One token per row of ``logits`` (shape ``[rows, vocab]``); returns tokens and their
    log-probabilities. ``temperature == 0`` is greedy; ``top_p < 1`` is nucleus sampling."""
    shifted = np.asarray(logits, dtype=np.float32)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    log_normaliser = np.log(weights.sum(axis=-1, dtype=np.float64))
    if temperature == 0:
        tokens = shifted.argmax(axis=-1)
    else:
        if temperature != 1.0:
            weights = np.exp(shifted / np.float32(temperature))
        if top_p < 1.0:
            weights = _nucleus(weights / weights.sum(axis=-1, keepdims=True), top_p)
        cdf = np.cumsum(weights, axis=-1, dtype=np.float64)
        tokens = np.empty(len(rngs), dtype=np.int64)
        for row, rng in enumerate(rngs):
            draw = rng.random() * cdf[row, -1]
            tokens[row] = min(int(np.searchsorted(cdf[row], draw, side="right")),
                              shifted.shape[-1] - 1)
    rows = np.arange(shifted.shape[0])
    return tokens, shifted[rows, tokens].astype(np.float64) - log_normaliser


def _nucleus(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    """Zero out every token outside the smallest set whose mass reaches ``top_p``."""
    order = np.argsort(-probabilities, axis=-1)
    sorted_p = np.take_along_axis(probabilities, order, axis=-1)
    keep_sorted = np.cumsum(sorted_p, axis=-1) - sorted_p < top_p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, probabilities, 0.0)


def sample_rng(seed: int, prefix: str, index: int) -> np.random.Generator:
    """The random stream of sample ``index`` of ``prefix``. It depends on these alone, so a
    sample is the same whatever ``n`` and whatever other prefixes share its call; every
    in-process engine draws from it, so engines draw alike."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(prefix.encode("utf-8")), index])


def sample_seed(seed: int, j: int, prefix: str = "") -> int:
    """The server-side seed of sample ``j`` of ``prefix`` in a call made with ``seed``.

    Depends on ``(seed, prefix, j)`` only, so the first ``k`` samples of a call with ``n > k``
    are those of a call with ``n = k``. The prefix is mixed in so that the beams of one search
    round do not all draw the same random numbers; hashed rather than ``seed + j`` so that calls
    with neighbouring seeds do not share samples."""
    digest = hashlib.sha256(f"ttscale-sample:{seed}:{j}:".encode() + prefix.encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_MODULUS
