"""llama.cpp's two attention kernels on a CPU: the flash kernel (llama.cpp's choice, ttscale's
default) against the plain one (``TTSCALE_FLASH_ATTN=off``), for the embedded model.

1. Decode rate: 16 rows of one 500-token prompt decoded step by step while the KV cache also
   holds an idle sequence of F cells (``--fills``), in one process with one context per
   kernel, the kernels' steps interleaved so that the machine's other load falls on both.
2. End to end: the same ``ttscale run`` (``--problems`` ladder level 1 problems, beam search
   and particle filtering at N = 16, the verifier, ``--parallel 4``) made ``--repeats`` times
   per kernel, alternating; generated tokens per wall second.

The plain kernel's rounding follows the cache's size, so its records are reproducible from
the same start (``--parallel 1``) but not across cache states (the engine's docstring); the
answers of the two kernels' runs are compared as a count.

Writes ``benchmarks/results/attention.json`` and ``attention.md``.

Usage: python benchmarks/attention.py [--threads 1] [--fills 0,2000,4000,8000] [--steps 30]
       [--problems 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ttscale.engines.embedded import embedded_model_path
from ttscale.engines.llama_library import import_llama_cpp
from ttscale.records import read_records

RESULTS = Path(__file__).parent / "results"
KERNELS = ("on", "off")  # TTSCALE_FLASH_ATTN values
PROMPT_CELLS = 500
ROWS = 16


class Context:
    """One llama.cpp context of the embedded model, decoding through the low-level API."""

    def __init__(self, lc, model, flash: str, threads: int) -> None:
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 32768, 512, 512
        params.n_seq_max, params.kv_unified = 64, True
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = (lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash == "on"
                                  else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.lc, self.ctx = lc, lc.llama_init_from_model(model, params)
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(512, 0, 1)

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, seq, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = seq, logits
        if self.lc.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def fill(self, seq: int, cells: int) -> None:
        for start in range(0, cells, 512):
            self.decode([(100 + p % 1000, p, seq, False)
                         for p in range(start, min(cells, start + 512))])

    def prepare(self, idle_cells: int) -> None:
        """An idle sequence of ``idle_cells`` cells, and the prompt shared by ROWS rows."""
        self.lc.llama_memory_clear(self.memory, True)
        self.fill(63, idle_cells)
        self.fill(0, PROMPT_CELLS)
        for seq in range(1, ROWS):
            self.lc.llama_memory_seq_cp(self.memory, 0, seq, -1, -1)


def decode_rates(fills: list[int], steps: int, threads: int) -> list[dict]:
    lc = import_llama_cpp()
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(str(embedded_model_path()).encode(),
                                          lc.llama_model_default_params())
    contexts = {flash: Context(lc, model, flash, threads) for flash in KERNELS}
    rows = []
    for cells in fills:
        for context in contexts.values():
            context.prepare(cells)
        seconds = dict.fromkeys(KERNELS, 0.0)
        for step in range(steps):
            for flash, context in contexts.items():  # interleaved: both see the same load
                started = time.perf_counter()
                context.decode([(200, PROMPT_CELLS + step, seq, True) for seq in range(ROWS)])
                seconds[flash] += time.perf_counter() - started
        rates = {flash: ROWS * steps / seconds[flash] for flash in KERNELS}
        rows.append({"idle_cells": cells, "tok_per_s": {k: round(v, 1) for k, v in rates.items()},
                     "off_over_on": round(rates["off"] / rates["on"], 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def end_to_end(problems: int, repeats: int, threads: int) -> dict:
    runs: dict[str, list[dict]] = {flash: [] for flash in KERNELS}
    answers: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(repeats):
            for flash in KERNELS:
                out = Path(scratch) / f"{flash}-{repeat}"
                command = [sys.executable, "-m", "ttscale.cli.main", "run", "--dataset",
                           "ladder", "--levels", "1", "--limit", str(problems), "--method",
                           "beam,pf", "--n", "16", "--prm", "grounded", "--step-agg", "min",
                           "--max-step-tokens", "64", "--max-depth", "8",
                           "--max-solution-tokens", "256", "--parallel", "4", "--threads",
                           str(threads), "--out", str(out)]
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True,
                               env={**os.environ, "TTSCALE_FLASH_ATTN": flash})
                seconds = time.perf_counter() - started
                records = read_records(out / "records.jsonl").records
                generated = sum(r["ledger"]["policy_tokens"]["generated"] for r in records)
                runs[flash].append({"seconds": round(seconds, 1), "generated": generated,
                                    "tok_per_s": round(generated / seconds, 1)})
                answers[f"{flash}-{repeat}"] = {r["key"]: r["answer"] for r in records}
                print(flash, json.dumps(runs[flash][-1]), flush=True)
    median = {flash: statistics.median(r["tok_per_s"] for r in runs[flash]) for flash in KERNELS}
    same = sum(answers["on-0"][k] == answers["off-0"].get(k) for k in answers["on-0"])
    return {"runs": runs, "median_tok_per_s": median,
            "off_over_on": round(median["off"] / median["on"], 2),
            "same_answers": f"{same} of {len(answers['on-0'])}"}


def markdown(result: dict) -> str:
    setup = result["setup"]
    lines = ["# llama.cpp attention kernels on a CPU: flash against plain", "",
             f"{setup['machine']}, {setup['threads']} thread(s), load average "
             f"{setup['load_average']} when the run began; one run.", "",
             f"## Decode rate, {ROWS} rows sharing a {PROMPT_CELLS}-token prompt", "",
             "| idle cells in the cache | flash tok/s | plain tok/s | plain ÷ flash |",
             "|---|---|---|---|"]
    for row in result["decode"]:
        rates = row["tok_per_s"]
        lines.append(f"| {row['idle_cells']} | {rates['on']} | {rates['off']} "
                     f"| {row['off_over_on']} |")
    e2e = result["end_to_end"]
    lines += ["", f"## End to end: `ttscale run`, {setup['problems']} ladder level 1 problems, "
              "beam search and particle filtering at N = 16, `--parallel 4`", "",
              "| kernel | runs (generated tok/s) | median tok/s |", "|---|---|---|"]
    for flash, name in (("on", "flash"), ("off", "plain")):
        lines.append(f"| {name} | {', '.join(str(r['tok_per_s']) for r in e2e['runs'][flash])} "
                     f"| {e2e['median_tok_per_s'][flash]} |")
    lines += ["", f"Plain ÷ flash, end to end: **{e2e['off_over_on']}**. Records with the same "
              f"answer in the first run of each kernel: {e2e['same_answers']} (the kernels "
              "round differently, and a sampled token that differs changes the rest of the "
              "solution)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fills", default="0,2000,4000,8000")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    setup = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
             "threads": args.threads, "problems": args.problems,
             "load_average": round(os.getloadavg()[0], 2)}
    result = {"setup": setup,
              "decode": decode_rates([int(f) for f in args.fills.split(",")], args.steps,
                                     args.threads),
              "end_to_end": end_to_end(args.problems, args.repeats, args.threads)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "attention.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "attention.md").write_text(markdown(result))
    print(f"wrote {RESULTS / 'attention.md'}")


if __name__ == "__main__":
    main()
