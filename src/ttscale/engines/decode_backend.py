"""What the continuous-batching loop needs of a model: a KV cache shared by many sequences,
which it decodes batches of tokens into, and the text of each token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

Entry = tuple[int, int, int, bool]  # token, position, sequence, wants logits


class DecodeBackend(Protocol):
    """What the loop needs of a model with a multi-sequence KV cache."""

    n_ctx: int

    def decode(self, entries: Sequence[Entry]) -> tuple[int, np.ndarray]:
        """Decode one batch; returns llama_decode's status and the logits rows of the entries
        that asked for them, in order (valid until the next decode)."""
        ...

    def seq_copy(self, source: int, target: int, start: int, end: int) -> None: ...

    def seq_remove(self, seq: int, start: int) -> None: ...

    def memory_clear(self) -> None: ...

    def piece(self, token: int) -> bytes: ...

    def is_end_of_generation(self, token: int) -> bool: ...
