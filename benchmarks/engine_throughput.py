"""Raw llama.cpp engine throughput on the embedded model: one sequence vs a batch.

Prints generated tokens/s for 1 prefix × 1 sample and for 2 prefixes × 16 samples, and their
ratio, all measured in the same run. Usage: python benchmarks/engine_throughput.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time

from ttscale.engines.llama_cpp import LlamaCppEngine

PROMPT = ("Problem: Tom has 3 boxes with 8 pencils in each box. He gives 5 pencils to his "
          "friend. How many pencils does Tom have now?\nSolution:\n")


def tokens_per_second(engine: LlamaCppEngine, prefixes: list[str], n: int, max_tokens: int,
                      repeats: int) -> float:
    best = 0.0
    for repeat in range(repeats):
        started = time.perf_counter()
        results = engine.extend_sync(prefixes, n, [], max_tokens, 0.8, 1.0, repeat)
        elapsed = time.perf_counter() - started
        generated = sum(c.generated_tokens for row in results for c in row)
        best = max(best, generated / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    engine = LlamaCppEngine(n_ctx=16384, n_threads=args.threads)
    engine.extend_sync([PROMPT], 1, [], 4, 0.8, 1.0, 0)  # warm-up
    single = tokens_per_second(engine, [PROMPT], 1, args.max_tokens, args.repeats)
    batched = tokens_per_second(engine, [PROMPT + "Step 1:", PROMPT + "First,"], 16,
                                args.max_tokens, args.repeats)
    print(json.dumps({"single_tok_per_s": round(single, 1),
                      "batch32_tok_per_s": round(batched, 1),
                      "batch_over_single": round(batched / single, 2)}, indent=2))


if __name__ == "__main__":
    main()
