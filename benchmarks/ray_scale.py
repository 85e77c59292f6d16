"""The same run in one process and on a local Ray with several actors, back to back.

Runs ``--problems`` GSM8K test problems × (majority, Best-of-N) at budget ``--n`` on the
embedded model twice, with the same seed: in this process (one llama.cpp engine with
``--actors`` × ``--cpus-per-actor`` threads, ``--parallel`` problems at once), then on a
local Ray with ``--actors`` actors of ``--cpus-per-actor`` CPUs each (same ``--parallel``
per actor). Prints both wall times (the Ray one with and without starting Ray and loading
the actors' models), their ratio and how many records agree, and writes
``benchmarks/results/ray_scale.json`` and a Markdown table beside it.
Usage: python benchmarks/ray_scale.py [--problems 16] [--n 8] [--actors 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import ray

from ttscale.engines import EngineSpec
from ttscale.engines.llama_cpp import LlamaCppEngine
from ttscale.prompts import PromptFormat
from ttscale.rewards import ScorerOptions, load_scorer
from ttscale.run.distributed import RayCluster, WorkerSpec, run_on_ray
from ttscale.run.runner import DatasetSelection, RunConfig, run
from ttscale.settings import SearchSettings

RESULTS = Path(__file__).parent / "results" / "ray_scale.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--cpus-per-actor", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings = SearchSettings(max_step_tokens=64, max_solution_tokens=256, max_depth=8)
    config = RunConfig(dataset=DatasetSelection("gsm8k", limit=args.problems),
                       methods=("majority", "bon"), budgets=(args.n,), scorer="confidence",
                       settings=settings)
    threads = args.actors * args.cpus_per_actor
    with tempfile.TemporaryDirectory() as scratch:
        engine = LlamaCppEngine(n_ctx=8192, n_threads=threads)
        started = time.perf_counter()
        local = asyncio.run(run(config, engine, load_scorer("confidence"),
                                Path(scratch) / "local", PromptFormat(),
                                parallel=args.parallel))
        local_seconds = time.perf_counter() - started
        asyncio.run(engine.close())

        started = time.perf_counter()
        ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 2**20)
        ready: list[float] = []
        distributed = run_on_ray(
            config, RayCluster(actors=args.actors, cpus_per_actor=args.cpus_per_actor),
            WorkerSpec(EngineSpec(n_ctx=8192), "confidence", ScorerOptions()),
            Path(scratch) / "ray", PromptFormat(), parallel=args.parallel,
            on_actors_ready=lambda _: ready.append(time.perf_counter()))
        ray_seconds = time.perf_counter() - started
        ray.shutdown()
    answers = {r["key"]: r["answer"] for r in local.records}
    agree = sum(answers.get(r["key"]) == r["answer"] for r in distributed.records)
    result = {
        "problems": args.problems, "n": args.n, "methods": list(config.methods),
        "actors": args.actors, "cpus_per_actor": args.cpus_per_actor,
        "parallel": args.parallel, "records": len(local.records),
        "local_seconds": round(local_seconds, 2),
        "ray_seconds": round(ray_seconds, 2),
        "ray_seconds_after_actors_ready": round(ray_seconds - (ready[0] - started), 2),
        "ray_over_local": round(ray_seconds / local_seconds, 3),
        "records_with_the_same_answer": agree,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(
        "| run | seconds |\n| --- | --- |\n"
        f"| one process, {threads} threads | {result['local_seconds']} |\n"
        f"| Ray, {args.actors} actors × {args.cpus_per_actor} CPU, all | "
        f"{result['ray_seconds']} |\n"
        f"| Ray, after the actors were ready | {result['ray_seconds_after_actors_ready']} |\n"
        f"\n{agree} of {len(local.records)} records give the same answer; "
        f"{args.problems} GSM8K problems × majority, bon at N={args.n}. Answers differ where "
        "batches differ (llama.cpp's sums depend on which sequences share a batch); one "
        "problem at a time on one thread, the two agree record for record "
        "(tests/test_distributed.py).\n")


if __name__ == "__main__":
    main()
