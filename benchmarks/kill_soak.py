"""Kill soak: real ``ttscale`` jobs on the embedded model, SIGKILLed at random moments and
resumed each time, end with the same records as an uninterrupted run.

For each job (``run``: several methods and budgets, one problem at a time; ``label``: ``ttscale
prm label``; ``calibrate``: ``ttscale plan calibrate``):

1. the job runs once without interruption (the reference) and its wall time T is measured;
2. the same command runs again in a fresh folder and is SIGKILLed after a random time (its
   start-up plus a uniform draw from [0, 1.5 T / kills], from ``random.Random(seed)``, so most
   lives end mid-work), then started again, until ``--kills`` kills have landed and a life
   finishes;
3. after each kill the folder is checked: every output line whole except perhaps the last
   (the one being written), no key twice; the final outputs are compared with the reference.

Equality: for the jobs that run one problem at a time (``run`` with ``--parallel 1``,
``label`` with ``--parallel 1``) every record equals the reference's byte for byte once the
fields that measure time (``seconds``) are dropped; ``calibrate`` runs problems together
(their order in a batch, hence rounding, depends on timing), so its records must hold the
same keys with the same answers.

Writes ``benchmarks/results/kill_soak.json`` and ``kill_soak.md``.

Usage: python benchmarks/kill_soak.py [--jobs run,label,calibrate] [--kills 10] [--seed 0]
       [--work runs/kill-soak]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SMALL = ["--max-step-tokens", "32", "--max-depth", "4", "--max-solution-tokens", "96"]
JOBS = {
    "run": (["run", "--dataset", "gsm8k", "--limit", "6", "--method", "greedy,majority,bon,beam",
             "--n", "2,4", "--width", "2", "--prm", "self", *SMALL, "--parallel", "1"],
            "exact"),
    "label": (["prm", "label", "--dataset", "gsm8k_train", "--limit", "4", "--samples", "2",
               "--rollouts", "2", "--max-tokens", "96", "--parallel", "1"], "exact"),
    "calibrate": (["plan", "calibrate", "--dataset", "gsm8k", "--limit", "6",
                   "--methods", "majority,bon", "--n", "2,4", "--difficulty-samples", "2",
                   "--probe", "1", "--min-problems", "1", "--prm", "self", *SMALL], "answers"),
}
TIMING_FIELDS = {"seconds"}
STARTUP_S = 3.0  # a life shorter than this would rarely get past loading the model


def command(job: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "ttscale.cli.main", *JOBS[job][0], "--out", str(out)]


def output_files(folder: Path) -> list[Path]:
    """The job's JSONL outputs (records, labels), in a stable order."""
    return sorted(p for p in folder.rglob("*.jsonl") if p.name != "failures.jsonl")


def read_lines(path: Path) -> tuple[list[dict], bool]:
    """Parsed whole lines, and whether the file ends in a part-written line."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    partial = lines[-1] != b""
    return [json.loads(line) for line in lines[:-1]], partial


def stable(record: dict) -> str:
    return json.dumps({k: v for k, v in record.items() if k not in TIMING_FIELDS},
                      sort_keys=True, ensure_ascii=False)


def key_of(record: dict) -> str:
    return record.get("key") or json.dumps([record.get("problem_id"), record.get("solution"),
                                            record.get("step")], sort_keys=True)


def check_after_kill(folder: Path) -> dict:
    """Whole lines but the last, no key twice: what a kill may leave and resume from."""
    partial_tails, duplicated = 0, 0
    for path in output_files(folder):
        records, partial = read_lines(path)
        partial_tails += partial
        keys = [key_of(r) for r in records]
        duplicated += len(keys) - len(set(keys))
    return {"partial_tails": partial_tails, "duplicated": duplicated}


def compare(reference: Path, soaked: Path, mode: str) -> dict:
    """Records lost, duplicated and differing between the reference and the soaked outputs."""
    lost = duplicated = differing = total = 0
    ref_files = {p.relative_to(reference): p for p in output_files(reference)}
    soak_files = {p.relative_to(soaked): p for p in output_files(soaked)}
    for name, path in ref_files.items():
        ours, _ = read_lines(path)
        theirs, _ = read_lines(soak_files[name]) if name in soak_files else ([], False)
        total += len(ours)
        theirs_keys = [key_of(r) for r in theirs]
        duplicated += len(theirs_keys) - len(set(theirs_keys))
        by_key = {key_of(r): r for r in theirs}
        for record in ours:
            other = by_key.get(key_of(record))
            if other is None:
                lost += 1
            elif mode == "exact" and stable(other) != stable(record):
                differing += 1
            elif mode == "answers" and other.get("answer") != record.get("answer"):
                differing += 1
    extra = sum(1 for name in soak_files if name not in ref_files)
    return {"records": total, "lost": lost, "duplicated": duplicated, "differing": differing,
            "extra_files": extra}


def run_reference(job: str, folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(command(job, folder), check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def soak(job: str, folder: Path, kills: int, rng: random.Random, reference_s: float) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    lives, landed, crashes = [], 0, 0
    while True:
        life = STARTUP_S + rng.uniform(0, 1.5 * reference_s / kills) if landed < kills else None
        process = subprocess.Popen(command(job, folder), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            process.wait(timeout=life)
            ended = "finished" if process.returncode == 0 else f"exit {process.returncode}"
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            landed += 1
            ended = "killed"
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        entry = {"life_s": None if life is None else round(life, 2), "ended": ended,
                 **check_after_kill(folder)}
        if ended.startswith("exit"):
            crashes += 1
            entry["stderr"] = stderr[-2000:]
        lives.append(entry)
        print(f"  {job}: life {len(lives)}: {entry}", flush=True)
        if ended == "finished":
            return {"kills": landed, "lives": lives, "crashes": crashes}
        if crashes > 3:
            raise SystemExit(f"{job} keeps failing after a kill:\n{stderr[-2000:]}")


def markdown(results: dict) -> str:
    lines = ["# Kill soak", "",
             "Real jobs on the embedded model, SIGKILLed at random moments and resumed each "
             f"time (seed {results['seed']}), against an uninterrupted run of the same command.",
             "", "| job | kills | kills mid-write (partial last line) | records | lost | "
             "duplicated | differing | compared on | crashes |", "|---|---|---|---|---|---|---|"
             "---|---|"]
    for job, r in results["jobs"].items():
        mid = sum(1 for life in r["lives"] if life["ended"] == "killed" and life["partial_tails"])
        c = r["comparison"]
        lines.append(f"| {job} | {r['kills']} | {mid} | {c['records']} | {c['lost']} | "
                     f"{c['duplicated']} | {c['differing']} | {r['mode']} | {r['crashes']} |")
    lines += ["", "`exact`: every record byte for byte, without its `seconds`; `answers`: the "
              "same keys with the same answers (problems batched together round differently)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=lambda s: s.split(","), default=list(JOBS))
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/kill-soak"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = random.Random(args.seed)
    results: dict = {"seed": args.seed, "kills_asked": args.kills, "jobs": {}}
    for job in args.jobs:
        print(f"{job}: reference run", flush=True)
        reference_s = run_reference(job, args.work / f"{job}-reference")
        print(f"{job}: {reference_s:.0f} s uninterrupted; soaking with {args.kills} kills",
              flush=True)
        outcome = soak(job, args.work / f"{job}-soak", args.kills, rng, reference_s)
        outcome["comparison"] = compare(args.work / f"{job}-reference",
                                        args.work / f"{job}-soak", JOBS[job][1])
        outcome.update(mode=JOBS[job][1], reference_s=round(reference_s, 1),
                       command=" ".join(["ttscale", *JOBS[job][0]]))
        print(f"{job}: {outcome['comparison']}", flush=True)
        results["jobs"][job] = outcome
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "kill_soak.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.results / "kill_soak.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
