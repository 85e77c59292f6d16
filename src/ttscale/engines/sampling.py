"""Token sampling from raw logits, vectorised over the sequences of a batch.

Each row has its own random generator, so a sample's tokens do not depend on which other
sequences share its batch. Log-probabilities are those of the untempered distribution."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def sample_rows(
    logits: np.ndarray,
    rngs: Sequence[np.random.Generator],
    temperature: float,
    top_p: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One token per row of ``logits`` (shape ``[rows, vocab]``); returns tokens and their
    log-probabilities. ``temperature == 0`` is greedy; ``top_p < 1`` is nucleus sampling."""
    logits = np.asarray(logits, dtype=np.float64)
    base = log_softmax(logits)
    if temperature == 0:
        tokens = base.argmax(axis=-1)
    else:
        tempered = np.exp(log_softmax(logits / temperature))
        if top_p < 1.0:
            tempered = _nucleus(tempered, top_p)
        cdf = np.cumsum(tempered, axis=-1)
        draws = np.array([rng.random() for rng in rngs]) * cdf[:, -1]
        tokens = (cdf < draws[:, None]).sum(axis=-1)
        tokens = np.minimum(tokens, logits.shape[-1] - 1)
    rows = np.arange(logits.shape[0])
    return tokens, base[rows, tokens]


def _nucleus(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    """Zero out every token outside the smallest set whose mass reaches ``top_p``."""
    order = np.argsort(-probabilities, axis=-1)
    sorted_p = np.take_along_axis(probabilities, order, axis=-1)
    keep_sorted = np.cumsum(sorted_p, axis=-1) - sorted_p < top_p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, probabilities, 0.0)
