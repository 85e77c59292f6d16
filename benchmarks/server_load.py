"""``ttscale serve`` under load, on the embedded model, on localhost.

One command starts the server three times, back to back, and sends each the same load:
``--requests`` chat requests from ``--clients`` concurrent ``openai`` clients (Best-of-N at a
small budget; a refused request is retried after the server's Retry-After, at most
``--retries`` times) while ``/health`` is polled. First with ``--max-running`` searches at once
and the server's default queue (``--max-waiting`` to set one) on an otherwise idle machine;
then one search at a time, so the ratio of the two says what batching concurrent requests'
searches together brings; then as the first, with ``--busy`` CPU-bound processes spinning
beside (a loaded machine).

Every figure comes from the load generator's own counts and the server's ``/metrics``; writes
``benchmarks/results/server_load.json`` (or ``--out``) and a Markdown table beside it.
Usage: python benchmarks/server_load.py [--requests 200] [--clients 50] [--max-running 4]
       [--max-waiting N] [--busy 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "server_load.json"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from throughput import machine  # noqa: E402 - beside this file

from load_generator import run_load  # noqa: E402 - tests/ is not a package
from server_process import free_port, running_server  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"


def metrics(root: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{root}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            values[key] = sample.value
    return values


def _spin() -> None:
    while True:
        pass


def one_server(args, label: str, max_running: int, busy: int, log_dir: Path) -> dict:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    queue = ["--max-waiting", str(args.max_waiting)] if args.max_waiting is not None else []
    command = [sys.executable, "-m", "ttscale.cli.main", "serve", "--port", str(port),
               "--threads", str(args.threads), "--n-ctx", str(args.n_ctx),
               "--max-running", str(max_running), *queue, "--log-level", "warning"]
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for spinner in spinners:
        spinner.start()
    try:
        return _measure(args, command, root,
                        log_dir / f"server-{label.split()[0]}-{max_running}.log",
                        label, max_running, busy)
    finally:
        for spinner in spinners:
            spinner.terminate()


def _measure(args, command, root, log, label, max_running, busy) -> dict:
    with running_server(command, f"{root}/health", log):
        # one request first, so that both runs start with the few-shot prompt cached
        asyncio.run(run_load(f"{root}/v1", MODEL, requests=1, clients=1,
                             budget=args.budget, max_tokens=args.max_tokens))
        before = metrics(root)
        result = asyncio.run(run_load(f"{root}/v1", MODEL, requests=args.requests,
                                      clients=args.clients, budget=args.budget,
                                      max_tokens=args.max_tokens, retries=args.retries))
        after = metrics(root)
    spent = {key: after[key] - before.get(key, 0.0) for key in after
             if key.startswith(("ttscale_tokens_total", "ttscale_flops_total"))}
    generated = spent.get("ttscale_tokens_total|kind=generated|model=policy", 0.0)
    summary = result.summary()
    return {"label": label, "max_running": max_running, "busy_processes": busy, **summary,
            "server_spent": spent,
            "generated_tokens": generated,
            "generated_tok_per_s": generated / summary["wall_s"] if summary["wall_s"] else None}


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        "# `ttscale serve` under load",
        "",
        f"{s['requests']} chat requests from {s['clients']} concurrent clients, Best-of-N "
        f"with budget {s['budget']} and max_tokens {s['max_tokens']}, a refused request "
        f"retried after Retry-After at most {s['retries']} times; {MODEL} Q4_1, "
        f"{r['machine']['cpu']}, {s['threads']} threads; queue: "
        f"{s['max_waiting'] if s['max_waiting'] is not None else 'the server default'}; one "
        "run each, back to back; `loaded`: CPU-bound processes spinning beside.",
        "",
        "| | " + " | ".join(f"{run['label']}, --max-running {run['max_running']}"
                           for run in r["runs"]) + " |",
        "|---|" + "---|" * len(r["runs"]),
    ]
    rows = [
        ("answered", lambda run: run["answered"]),
        ("refused (429) in the end", lambda run: run["statuses"].get("429", 0)),
        ("other outcomes", lambda run: sum(v for k, v in run["statuses"].items()
                                          if k not in ("200", "429"))),
        ("429 replies, retries included", lambda run: run["refusals_429"]),
        ("latency p50 (s, waits included)", lambda run: _f(run["p50_s"])),
        ("latency p99 (s)", lambda run: _f(run["p99_s"])),
        ("answered per second", lambda run: _f(run["answered_per_s"])),
        ("generated tok/s (from /metrics)", lambda run: _f(run["generated_tok_per_s"])),
        ("/health checks, failed", lambda run: f"{run['health_checks']}, "
                                              f"{run['health_failures']}"),
        ("slowest /health (s)", lambda run: _f(run["health_max_s"], 3)),
        ("wall time (s)", lambda run: _f(run["wall_s"])),
    ]
    for label, value in rows:
        lines.append(f"| {label} | " + " | ".join(str(value(run)) for run in r["runs"]) + " |")
    lines += ["", f"Generated tokens per second on the idle machine, concurrent ÷ one at a "
                  f"time: **{_f(r['batching_ratio'])}**.", ""]
    return "\n".join(lines)


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--budget", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--max-running", type=int, default=4)
    parser.add_argument("--max-waiting", type=int, default=None,
                        help="the server's queue (default: its own default)")
    parser.add_argument("--busy", type=int, default=2,
                        help="CPU-bound processes beside the server in the loaded run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--logs", type=Path, default=None,
                        help="keep the servers' logs here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        logs = args.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        runs = [one_server(args, "idle", args.max_running, 0, logs),
                one_server(args, "idle", 1, 0, logs),
                one_server(args, f"loaded ({args.busy} busy)", args.max_running, args.busy,
                           logs)]
    rates = [run["generated_tok_per_s"] for run in runs[:2]]
    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "logs")},
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
        "batching_ratio": rates[0] / rates[-1] if len(rates) > 1 and rates[-1] else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
