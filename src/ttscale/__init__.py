"""ttscale: compute-optimal test-time scaling for math reasoning.

A policy model writes a solution step by step, a scorer (a process reward model or a
model-free verifier) scores every step, and a search (Best-of-N, beam search, DVTS) joins
them. See ``ttscale.solve`` for one problem and the ``ttscale`` CLI for runs."""

__version__ = "0.1.0"

from ttscale.run.solve import SolveResult, solve  # noqa: E402

__all__ = ["SolveResult", "__version__", "solve"]
