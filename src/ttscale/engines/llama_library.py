"""Importing llama-cpp-python with CPU threads that wait politely.

llama.cpp's CPU backend is built with OpenMP, and libgomp's default has a thread that reaches
one of the graph's many barriers spin for a long while before it sleeps. On a machine whose
cores something else also uses, the spinning thread takes the core that the thread it waits
for needs. Measured on a 2-core machine with 2 threads, 32 samples decoding
(``benchmarks/results/threads.md``): with two other busy processes, 38.6 tok/s spinning and
87.0 waiting passively; with one, 59.3 and 93.4; idle, 212.6 and 155.7. Passive waiting gives
up a quarter of the idle rate to keep a busy machine's within 2x of it, so it is the default.
libgomp reads the setting once, when it loads, so it is set before the first import. A user
who exported ``OMP_WAIT_POLICY`` (``ACTIVE`` on a machine of one's own) or ``GOMP_SPINCOUNT``
keeps their setting."""

from __future__ import annotations

import os
from types import ModuleType

from ttscale.engines import FLASH_ATTN

OMP_WAIT_POLICY = "PASSIVE"


def default_threads() -> int:
    """llama.cpp's CPU threads when none are given: ``$TTSCALE_THREADS``, else every CPU this
    process may run on."""
    chosen = os.environ.get("TTSCALE_THREADS", "").strip()
    if chosen:
        if not chosen.isdigit() or int(chosen) < 1:
            raise ValueError(f"TTSCALE_THREADS must be a positive whole number, not {chosen!r}")
        return int(chosen)
    return max(1, len(os.sched_getaffinity(0)))


def default_flash_attn() -> str:
    """llama.cpp's attention kernel when none is given: ``$TTSCALE_FLASH_ATTN`` (``auto``,
    ``on`` or ``off``), else ``auto``."""
    chosen = os.environ.get("TTSCALE_FLASH_ATTN", "").strip().lower()
    if chosen and chosen not in FLASH_ATTN:
        raise ValueError(f"TTSCALE_FLASH_ATTN must be auto, on or off, not {chosen!r}")
    return chosen or "auto"


def import_llama_cpp() -> ModuleType:
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    import llama_cpp

    return llama_cpp
