"""How large a run the HTML report's viewer stays responsive with.

For each size P x N (P problems, a pool of N samples each) this script:

1. synthesises a run folder (seeded, fast, no model): per problem one Best-of-N pool of N
   chains of 6-12 steps (60-200 characters of varied text, some with LaTeX), written as pooled
   ``bon`` and ``majority`` records at budgets 4, 16, 64, ... N (the record shape of
   ``ttscale run``: candidates, by_aggregation, a pooled subset keeps only its own chains), and
   a ``beam`` record at n=N, width 4, whose tree holds N nodes per round for 8 rounds;
2. builds the report with ``build_report`` in a child process, timing it (with a breakdown by
   phase) and reading the child's peak RSS;
3. opens the HTML file in headless Debian chromium (``tests/browser.py``) and measures: time
   from navigation start to ``ttscaleReport.ready``, switching to the trees tab, opening the
   first, middle and last problem (``openProblem(i)``, until the next frame is drawn), switching
   to the beam@N search, clicking the first 20 collapsed rows, opening every child of the beam
   root, shift-clicking every child of the root (the whole tree), applying the "wrong" filter
   and a text filter, the longest main-thread task (``longtask`` entries) during those actions,
   the JS heap after opening problems, and the browser's resident memory.

Every action is timed in the page from just before it starts until a task that runs after the
next animation frame (so style, layout and paint of the change are included).

Usage:
    .venv/bin/python benchmarks/report_scale.py --problems 500 --samples 256
    .venv/bin/python benchmarks/report_scale.py --sizes 50x64,500x256 [--keep DIR]

Writes ``benchmarks/results/report_scale.json`` and ``report_scale.md`` (``--out`` names the
JSON file; the Markdown goes beside it), with one row per size. Timings on a shared machine
are noisy: compare rows from the same invocation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
WIDTH = 4
BEAM_ROUNDS = 8
POLICY_PARAMETERS = 134_515_008
PROMPT_TOKENS = 400
GSM8K_TEST = 1319
STEP_MODES = ("last", "min", "mean", "prod")
ANSWER_MODES = ("prm_max", "prm_vote")

# ---- synthetic text ------------------------------------------------------------------------

WORDS = (
    "the total number of apples oranges eggs dollars hours minutes miles students books cars "
    "each every day week costs sells buys gives has left remaining after before twice half "
    "three times more less than per so we multiply divide add subtract get find first then "
    "next now which means that she he they her his their store farm school box bag price "
    "profit rate speed distance area width length sum difference product ratio fraction of "
    "percent is equal to therefore because since if and or together altogether in on by for"
).split()
LATEX = (r"\frac{{{a}}}{{{b}}}", r"$x^2 + {a}x = {c}$", r"$\frac{{{a}}}{{{b}}} \times {c}$",
         r"\({a} \cdot {b} = {c}\)", r"$\sqrt{{{c}}}$", r"$$ {a} + {b} = {c} $$",
         r"$y_{{{a}}} = {b}$")


def _phrase_bank(rng: random.Random, size: int = 6000) -> list[str]:
    """Short phrases (words, numbers, sometimes math) that steps are built from."""
    bank = []
    for _ in range(size):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        words = rng.choices(WORDS, k=rng.randint(2, 6))
        roll = rng.random()
        if roll < 0.06:
            words.insert(rng.randint(0, len(words)),
                         rng.choice(LATEX).format(a=a, b=b, c=a * b))
        elif roll < 0.45:
            words.insert(rng.randint(0, len(words)), f"{a} * {b} = {a * b}")
        elif roll < 0.6:
            words.insert(rng.randint(0, len(words)), f"${a}.{b:02d}")
        bank.append(" ".join(words))
    return bank


def _step_text(rng: random.Random, bank: list[str], step: int) -> str:
    text = f"Step {step}: " + ", ".join(rng.choices(bank, k=rng.randint(2, 6)))
    return (text[:200].rstrip() if len(text) > 200 else text) + "."


# ---- records -------------------------------------------------------------------------------

def _aggregate(scores: list[float], mode: str) -> float:
    if not scores:
        return 0.0
    if mode == "last":
        return scores[-1]
    if mode == "min":
        return min(scores)
    if mode == "mean":
        return sum(scores) / len(scores)
    return math.prod(scores)


def _majority(answers: list[str | None]) -> tuple[int | None, dict[str, float]]:
    counts: dict[str, float] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0.0) + 1.0
    if not counts:
        return None, {}
    best = max(counts, key=counts.__getitem__)  # first of the most frequent, as dicts keep order
    return answers.index(best), counts


def _by_score(answers: list[str | None], scores: list[float], mode: str
              ) -> tuple[int | None, dict[str, float]]:
    indices = [i for i, answer in enumerate(answers) if answer is not None]
    if not indices:
        return None, {}
    if mode == "prm_max":
        best = max(indices, key=lambda i: scores[i])
        return best, {answers[best]: scores[best]}
    votes: dict[str, float] = {}
    for i in indices:
        votes[answers[i]] = votes.get(answers[i], 0.0) + scores[i]
    winner = max(votes, key=votes.__getitem__)
    return max((i for i in indices if answers[i] == winner), key=lambda i: scores[i]), votes


def _ledger(generated: int, calls: int, n: int, scored: bool) -> dict:
    prompt = PROMPT_TOKENS * n
    cached = prompt - PROMPT_TOKENS
    policy_flops = 2.0 * POLICY_PARAMETERS * (prompt - cached + generated)
    return {"policy_parameters": POLICY_PARAMETERS, "scorer_parameters": 0,
            "policy_tokens": {"prompt": prompt, "cached_prompt": cached, "generated": generated},
            "scorer_tokens": {"prompt": 0, "cached_prompt": 0, "generated": 0},
            "policy_calls": calls, "scorer_calls": calls if scored else 0,
            "policy_flops": policy_flops, "scorer_flops": 0.0, "total_flops": policy_flops}


def _record(problem: dict, method: str, n: int, width: int | None, candidates: list[dict],
            tree: list[dict], generated: int, calls: int, pool_size: int | None) -> dict:
    """A record as ``evaluation.build_record`` writes it, from chains with known answers."""
    answers = [c["answer"] for c in candidates]
    reference = problem["reference"]
    scored = method != "majority"
    by_aggregation = {}
    index, votes = _majority(answers)
    by_aggregation["-/majority"] = {"answer": answers[index] if index is not None else None,
                                    "correct": index is not None and answers[index] == reference}
    chosen, chosen_votes, solution_scores = index, votes, [None] * len(candidates)
    if scored:
        for step in STEP_MODES:
            scores = [_aggregate(c["step_scores"], step) for c in candidates]
            if step == "last":
                solution_scores = scores
            for mode in ANSWER_MODES:
                pick, pick_votes = _by_score(answers, scores, mode)
                answer = answers[pick] if pick is not None else None
                by_aggregation[f"{step}/{mode}"] = {"answer": answer,
                                                    "correct": answer == reference}
                if (step, mode) == ("last", "prm_vote"):
                    chosen, chosen_votes = pick, pick_votes
    answer = answers[chosen] if chosen is not None else None
    return {
        "version": 1, "key": f"{problem['id']}|{method}|{n}", "problem_id": problem["id"],
        "dataset": "gsm8k", "level": None, "subject": None, "method": method, "n": n,
        "width": width, "scorer": "confidence" if scored else None,
        "aggregation": ({"step": "last", "answer": "prm_vote"} if scored
                        else {"step": None, "answer": "majority"}),
        "answer": answer, "reference": reference, "correct": answer == reference,
        "selected": chosen if chosen is not None else 0, "votes": chosen_votes,
        "pass_at_n": any(c["answer"] == reference for c in candidates),
        "by_aggregation": by_aggregation,
        "candidates": [{"node": c["node"], "answer": c["answer"],
                        "correct": c["answer"] == reference,
                        "score": solution_scores[k] if scored else None,
                        "step_scores": c["step_scores"] if scored else None,
                        "finish_reason": c["finish_reason"], "steps": len(c["step_scores"]),
                        "generated_tokens": c["tokens"], "group": 0}
                       for k, c in enumerate(candidates)],
        "tree": tree, "ledger": _ledger(generated, calls, n, scored),
        "seconds": round(generated / 120.0, 4), "pool_size": pool_size,
    }


def _node(node_id: int, parent: int | None, depth: int, text: str, score: float | None,
          status: str, finish: str | None) -> dict:
    return {"id": node_id, "parent": parent, "depth": depth, "group": 0, "text": text,
            "tokens": max(1, len(text) // 4) if text else 0, "score": score, "status": status,
            "finish_reason": finish}


def _final_text(rng: random.Random, bank: list[str], step: int, answer: str | None) -> str:
    if answer is None:  # cut off by the token limit
        return _step_text(rng, bank, step)[:-1]
    lead = rng.choice(bank) if rng.random() < 0.5 else "So"
    return f"Step {step}: {lead}, the answer is \\boxed{{{answer}}}."


def _answer(rng: random.Random, problem: dict, p_right: float, wrong: list[str]) -> str:
    return problem["reference"] if rng.random() < p_right else rng.choice(wrong)


def _walk(rng: random.Random, start: float, steps: int, drift: float) -> list[float]:
    scores, value = [], start
    for _ in range(steps):
        value = min(0.999, max(0.001, value + drift + rng.gauss(0.0, 0.08)))
        scores.append(value)
    return scores


def _pool_records(rng: random.Random, bank: list[str], problem: dict, samples: int,
                  budgets: list[int], p_right: float, wrong: list[str]) -> list[dict]:
    nodes = [_node(0, None, 0, "", None, "kept", None)]
    chains = []  # per sample: its candidate (without scores) and its node indices
    for _ in range(samples):
        length = rng.randint(6, 12)
        cut = rng.random() < 0.08
        answer = None if cut else _answer(rng, problem, p_right, wrong)
        scores = _walk(rng, rng.uniform(0.3, 0.7), length,
                       0.02 if answer == problem["reference"] else -0.005)
        parent, first = 0, len(nodes)
        for step in range(1, length + 1):
            last = step == length
            text = _final_text(rng, bank, step, answer) if last else _step_text(rng, bank, step)
            finish = ("length" if cut else rng.choice(("eos", "stop"))) if last else None
            nodes.append(_node(len(nodes), parent, step, text, scores[step - 1],
                               "finished" if last else "kept", finish))
            parent = len(nodes) - 1
        chains.append({"node": parent, "answer": answer, "step_scores": scores,
                       "finish_reason": nodes[parent]["finish_reason"],
                       "tokens": sum(node["tokens"] for node in nodes[first:]),
                       "end": len(nodes)})
    records = []
    for n in budgets:
        subset = chains[:n]
        end = subset[-1]["end"]  # chains are contiguous: a prefix of samples is a prefix of ids
        generated = sum(c["tokens"] for c in subset)
        for method in ("bon", "majority"):
            if method == "bon":
                tree = nodes[:end]
            else:  # majority gives no scores: the pooled subset stores None
                tree = [dict(node, score=None) for node in nodes[:end]]
            records.append(_record(problem, method, n, None, subset, tree, generated, 1,
                                   samples))
    return records


def _beam_record(rng: random.Random, bank: list[str], problem: dict, samples: int,
                 p_right: float, wrong: list[str]) -> dict:
    """Beam search at n=samples, width 4: every round expands samples/4 kept beams into 4 steps
    each (the root into ``samples`` first steps); some steps finish, the best samples/4 of the
    rest are kept, the others pruned; the last round's best finish at the depth limit."""
    keep = max(1, samples // WIDTH)
    nodes = [_node(0, None, 0, "", None, "kept", None)]
    frontier = [(0, [])]  # (node id, step scores along the path)
    candidates = []
    for depth in range(1, BEAM_ROUNDS + 1):
        children = []
        for parent, path in frontier:
            for _ in range(samples if depth == 1 else WIDTH):
                start = path[-1] if path else rng.uniform(0.3, 0.7)
                score = min(0.999, max(0.001, start + rng.gauss(0.0, 0.1)))
                finished = rng.random() < 0.02 * depth
                answer = _answer(rng, problem, p_right, wrong) if finished else None
                text = (_final_text(rng, bank, depth, answer) if finished
                        else _step_text(rng, bank, depth))
                node = _node(len(nodes), parent, depth, text, score, "finished" if finished
                             else "pruned", rng.choice(("eos", "stop")) if finished else "stop")
                nodes.append(node)
                if finished:
                    candidates.append((node, answer, path + [score]))
                else:
                    children.append((node, path + [score]))
        children.sort(key=lambda item: -item[0]["score"])
        frontier = []
        for k, (node, path) in enumerate(children[:keep]):
            if depth == BEAM_ROUNDS:
                answer = None if k % 3 == 2 else _answer(rng, problem, p_right, wrong)
                node.update(status="finished" if answer else "truncated",
                            finish_reason="length")
                candidates.append((node, answer, path))
            else:
                node["status"] = "kept"
                frontier.append((node["id"], path))
        if not frontier:
            break
    by_id = {node["id"]: node for node in nodes}

    def chain_tokens(node: dict) -> int:
        total = 0
        while node["parent"] is not None:
            total, node = total + node["tokens"], by_id[node["parent"]]
        return total

    chains = [{"node": node["id"], "answer": answer, "step_scores": path,
               "finish_reason": node["finish_reason"], "tokens": chain_tokens(node)}
              for node, answer, path in candidates]
    generated = sum(node["tokens"] for node in nodes)
    return _record(problem, "beam", samples, WIDTH, chains, nodes, generated, BEAM_ROUNDS,
                   None)


def budgets_for(samples: int) -> list[int]:
    budgets, n = [], 4
    while n < samples:
        budgets.append(n)
        n *= 4
    return budgets + [samples]


def _problems(count: int, rng: random.Random) -> list[dict]:
    from ttscale.datasets import load_dataset

    known = {p.id: p.answer for p in load_dataset("gsm8k").problems}
    problems = []
    for i in range(count):
        pid = f"gsm8k-test-{i:04d}" if i < GSM8K_TEST else f"synthetic-{i:05d}"
        problems.append({"id": pid, "reference": known.get(pid) or str(rng.randint(2, 5000))})
    return problems


def _wrong_answers(rng: random.Random, reference: str) -> list[str]:
    try:
        value = float(reference.replace(",", ""))
    except ValueError:
        value = 10.0
    wrong = {str(int(value + delta)) for delta in (rng.randint(1, 40) for _ in range(6))}
    wrong |= {str(int(value * 2)), f"{value / 3:.2f}"}
    wrong.discard(reference)
    return sorted(wrong)


def synthesise(run_dir: Path, problems: int, samples: int, seed: int = SEED) -> dict:
    """Write manifest.json and records.jsonl of a P x N run into ``run_dir``."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bank = _phrase_bank(rng)
    chosen = _problems(problems, rng)
    budgets = budgets_for(samples)
    count, nodes = 0, 0
    with (run_dir / "records.jsonl").open("w", encoding="utf-8") as handle:
        for i, problem in enumerate(chosen):
            prng = random.Random(f"{seed}-{i}")
            p_right = prng.betavariate(0.7, 0.9)  # a spread of easy, medium and hard problems
            wrong = _wrong_answers(prng, problem["reference"])
            records = _pool_records(prng, bank, problem, samples, budgets, p_right, wrong)
            records.append(_beam_record(prng, bank, problem, samples, p_right, wrong))
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
                handle.write("\n")
                nodes += len(record["tree"])
            count += len(records)
    manifest = {
        "identity": {"dataset": "gsm8k", "scorer": "confidence",
                     "settings": {"temperature": 0.7, "width": WIDTH, "max_depth": BEAM_ROUNDS,
                                  "step_aggregation": "last", "answer_aggregation": "prm_vote",
                                  "seed": seed, "synthetic": True},
                     "policy": {"name": "synthetic-policy", "parameters": POLICY_PARAMETERS,
                                "engine": "none"}},
        "methods": ["majority", "bon", "beam"],
        "budgets": budgets,
        "dataset_selection": {"name": "gsm8k", "ids": [p["id"] for p in chosen], "levels": None,
                              "limit": None, "offset": 0, "shuffle_seed": None},
        "problems": problems,
        "versions": {"ttscale": _ttscale_version()},
        "model": {"name": "synthetic-policy", "parameters": POLICY_PARAMETERS,
                  "context_length": 8192},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                           encoding="utf-8")
    return {"records": count, "tree_nodes": nodes,
            "records_mb": round((run_dir / "records.jsonl").stat().st_size / 1e6, 1),
            "synth_s": round(time.perf_counter() - started, 1)}


def _ttscale_version() -> str:
    from ttscale import __version__

    return __version__


# ---- the build, in a child process ---------------------------------------------------------

BUILD_PHASES = ("load_runs", "difficulty_bins", "all_series", "save_static", "plotly_figure",
                "viewer_data", "_render_html")


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def build_child(run_dir: Path, html: Path) -> None:
    """Run ``build_report`` and print one JSON line: seconds, seconds and peak RSS by phase."""
    from ttscale.report import build

    phases: dict[str, dict] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                entry = phases.setdefault(name, {"s": 0.0, "calls": 0})
                entry["s"] = round(entry["s"] + time.perf_counter() - started, 2)
                entry["calls"] += 1
                entry["peak_rss_mib_after"] = _peak_rss_mib()
        return wrapper

    for name in BUILD_PHASES:
        setattr(build, name, timed(name, getattr(build, name)))
    before = _peak_rss_mib()
    started = time.perf_counter()
    build.build_report([run_dir], html, formats=("png",))
    seconds = time.perf_counter() - started
    print(json.dumps({"build_s": round(seconds, 2), "build_peak_rss_mib": _peak_rss_mib(),
                      "rss_before_build_mib": before, "phases": phases}))


def run_build(run_dir: Path, html: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--build-child", str(run_dir),
               str(html)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"build_report exited with {done.returncode}: "
                           f"{done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["html_mb"] = round(html.stat().st_size / 1e6, 1)
    return result


# ---- the browser ---------------------------------------------------------------------------

# Injected before the page's own scripts: long tasks from the start, and the moment the page
# says it is ready (body[data-ready="1"]).
EARLY_SCRIPT = """
window.__bench = {longtasks: [], readyAt: null, windows: {}};
try {
  new PerformanceObserver(function (list) {
    list.getEntries().forEach(function (e) {
      window.__bench.longtasks.push([e.startTime, e.duration]);
    });
  }).observe({type: "longtask", buffered: true});
} catch (error) { window.__bench.longtaskError = String(error); }
new MutationObserver(function () {
  if (window.__bench.readyAt === null && document.body &&
      document.body.getAttribute("data-ready") === "1") {
    window.__bench.readyAt = performance.now();
  }
}).observe(document, {attributes: true, subtree: true, attributeFilter: ["data-ready"]});
"""

# execute_async_script body: in a task of its own (so that the page's long-task observer sees
# it, which it does not for the driver's own script), run ACTION, which may return a Promise;
# report the time until a task after the next animation frame, the synchronous part, and what
# ACTION returned.
MEASURE = """
var done = arguments[arguments.length - 1];
var name = arguments[0];
function action() { %s }
function fail(error) { done({error: String(error && error.stack || error)}); }
function nextFrame() {
  return new Promise(function (resolve) {
    requestAnimationFrame(function () { setTimeout(resolve, 0); });
  });
}
function inTask(work) {
  return new Promise(function (resolve, reject) {
    setTimeout(function () { try { resolve(work()); } catch (error) { reject(error); } }, 0);
  });
}
function clickOneByOne(rows, shift) {
  var times = [];
  return rows.reduce(function (chain, row) {
    return chain.then(function () {
      var started;
      return inTask(function () {
        started = performance.now();
        if (shift) row.dispatchEvent(new MouseEvent("click", {bubbles: true, shiftKey: true}));
        else row.click();
      }).then(nextFrame).then(function () { times.push(performance.now() - started); });
    });
  }, Promise.resolve()).then(function () { return times; });
}
setTimeout(function () {
  var started = performance.now(), syncMs;
  function finish(result) {
    nextFrame().then(function () {
      var ended = performance.now();
      window.__bench.windows[name] = [started, ended];
      done({ms: ended - started, syncMs: syncMs,
            result: result === undefined ? null : result});
    });
  }
  try {
    var value = action();
    syncMs = performance.now() - started;
    Promise.resolve(value).then(finish, fail);
  } catch (error) { fail(error); }
}, 0);
"""

ROWS = "document.querySelectorAll('#problem-view .node-row').length"
BULK_ACTIONS = ("expand_root_ms",)
ROOT_CHILDREN = "'#problem-view ul.tree > li.node'"


def _measure(driver, name: str, body: str) -> dict:
    outcome = driver.execute_async_script(MEASURE % body, name)
    if "error" in outcome:
        raise RuntimeError(f"{name}: {outcome['error']}")
    return outcome


def _open_body(i: int) -> str:
    return (f"return window.ttscaleReport.openProblem({i}).then(function () {{"
            f"  return {{openMs: window.ttscaleReport.timings.openMs, rows: {ROWS},"
            f"           chosenShown: !!document.querySelector('#problem-view .chosen-leaf'),"
            f"           error: (document.querySelector('#problem-view .error') || {{}})"
            f"                  .textContent || null}};"
            f"}});")


# A user's clicks: one click per task, each followed by a frame.
EXPAND_FIRST_20 = f"""
var rows = Array.prototype.slice.call(document.querySelectorAll(
  {ROOT_CHILDREN[:-1]}[aria-expanded="false"] > .node-row'), 0, 20);
return clickOneByOne(rows, false).then(function (times) {{
  return {{clicked: rows.length, perClickMs: times, rows: {ROWS}}};
}});
"""

# In one task: every 'show more' page of the root's children, then open each still closed.
EXPAND_ROOT = f"""
var clicked = 0, more;
while ((more = document.querySelector('#problem-view ul.tree > li.more > button'))) more.click();
document.querySelectorAll({ROOT_CHILDREN[:-1]}[aria-expanded="false"] > .node-row')
  .forEach(function (row) {{ row.click(); clicked += 1; }});
return {{clicked: clicked, rootChildren: document.querySelectorAll({ROOT_CHILDREN}).length,
         rows: {ROWS}}};
"""

# Shift-click (open everything below) on every child of the root, one per task.
EXPAND_TREE = f"""
var rows = Array.prototype.slice.call(document.querySelectorAll(
  {ROOT_CHILDREN[:-1]}[aria-expanded] > .node-row'));
return clickOneByOne(rows, true).then(function (times) {{
  return {{clicked: rows.length, maxClickMs: Math.max.apply(null, times.concat([0])),
           rows: {ROWS}, morePagesLeft: document.querySelectorAll('#problem-view li.more').length}};
}});
"""


def _tab_body(method: str, samples: int) -> str:
    label = f"{method}@{samples}"
    return (f"var tab = document.querySelector('.search-tab[data-search=\"{label}\"]');"
            f"if (!tab) throw new Error('no {label} search tab');"
            f"tab.click();"
            f"return {{rows: {ROWS},"
            f"  chosenShown: !!document.querySelector('#problem-view .chosen-leaf')}};")


def _filter_body(element: str, value: str, event: str) -> str:
    return (f"var control = document.getElementById('{element}');"
            f"control.value = {json.dumps(value)};"
            f"control.dispatchEvent(new Event('{event}', {{bubbles: true}}));"
            f"return {{listed: document.querySelectorAll('#problems > li.problem-item').length,"
            f"         rows: {ROWS}}};")


def _browser_rss(driver) -> dict:
    try:
        import psutil
    except ImportError:
        return {}
    try:
        service = psutil.Process(driver.service.process.pid)
        processes = [p for p in service.children(recursive=True) if "chrom" in p.name()]
        sizes = [p.memory_info().rss for p in processes]
    except (psutil.Error, AttributeError):
        return {}
    return {"browser_rss_mib": round(sum(sizes) / 2**20, 1),
            "largest_process_rss_mib": round(max(sizes, default=0) / 2**20, 1)}


def _heap_mib(driver) -> float | None:
    try:
        usage = driver.execute_cdp_cmd("Runtime.getHeapUsage", {})
        return round(usage["usedSize"] / 2**20, 1)
    except Exception:  # noqa: BLE001 - the CDP call is optional; fall back to the page's figure
        used = driver.execute_script(
            "return performance.memory ? performance.memory.usedJSHeapSize : null")
        return round(used / 2**20, 1) if used else None


def measure_browser(html: Path, problems: int, samples: int, timeout_s: float
                    ) -> tuple[dict, dict]:
    """(figures, details) of one report in headless chromium; details["error"] says at which
    step the browser part stopped, if it did."""
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import chromium  # noqa: E402 - tests/ is not a package

    figures: dict = {}
    details: dict = {}
    step = "start chromium"
    try:
        with chromium(timeout_s=timeout_s) as driver:
            details["chromium"] = driver.capabilities.get("browserVersion")
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                   {"source": EARLY_SCRIPT})
            step = "load the page (driver.get waits for the load event)"
            started = time.perf_counter()
            driver.get(html.resolve().as_uri())
            details["get_returned_s"] = round(time.perf_counter() - started, 2)
            step = "wait for ttscaleReport.ready"
            ready = driver.execute_async_script(
                "var done = arguments[0];"
                "(function poll() {"
                "  if (window.__bench.readyAt !== null) {"
                "    var nav = performance.getEntriesByType('navigation')[0] || {};"
                "    done({readyAt: window.__bench.readyAt, timings: window.ttscaleReport.timings,"
                "          dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,"
                "          responseEnd: nav.responseEnd, longtaskError:"
                "          window.__bench.longtaskError || null});"
                "  } else setTimeout(poll, 20);"
                "})();")
            figures["load_to_ready_ms"] = round(ready["readyAt"])
            details.update(dom_content_loaded_ms=round(ready["dcl"] or 0),
                           load_event_ms=round(ready["load"] or 0),
                           response_end_ms=round(ready["responseEnd"] or 0),
                           page_timings={k: round(v) for k, v in ready["timings"].items()})
            if ready["longtaskError"]:
                details["longtask_error"] = ready["longtaskError"]
            heap_at_ready = _heap_mib(driver)
            actions_start = driver.execute_script("return performance.now()")
            step = "switch to the trees tab"
            figures["tab_trees_ms"] = round(_measure(
                driver, "tab", "document.querySelector('[data-tab=\"trees\"]').click();")["ms"])
            opened = []
            for i in sorted({0, problems // 2, problems - 1}):
                step = f"open problem {i}"
                outcome = _measure(driver, f"open {i}", _open_body(i))
                if outcome["result"].get("error"):
                    raise RuntimeError(f"problem {i}: {outcome['result']['error']}")
                opened.append({"problem": i, "ms": round(outcome["ms"]),
                               "resolved_ms": round(outcome["result"]["openMs"]),
                               "rows": outcome["result"]["rows"],
                               "chosen_leaf_shown": outcome["result"]["chosenShown"]})
            figures["open_problem_ms"] = [entry["ms"] for entry in opened]
            details["open_problem"] = opened
            figures["js_heap_mib"] = _heap_mib(driver)
            details["js_heap_at_ready_mib"] = heap_at_ready
            step = f"switch to the bon@{samples} search"
            outcome = _measure(driver, "bon tab", _tab_body("bon", samples))
            figures["bon_tab_ms"] = round(outcome["ms"])
            details["bon_tab"] = outcome["result"]
            step = f"switch to the beam@{samples} search"
            outcome = _measure(driver, "beam tab", _tab_body("beam", samples))
            figures["beam_tab_ms"] = round(outcome["ms"])
            details["beam_tab"] = outcome["result"]
            for name, body in (("expand_ms", EXPAND_FIRST_20), ("expand_root_ms", EXPAND_ROOT),
                               ("expand_tree_ms", EXPAND_TREE)):
                step = name
                outcome = _measure(driver, name, body)
                figures[name] = round(outcome["ms"])
                details[name.replace("_ms", "")] = outcome["result"]
            clicks = details["expand"].pop("perClickMs")
            figures["expand_click_max_ms"] = round(max(clicks, default=0.0))
            details["expand"]["per_click_ms"] = [round(ms) for ms in clicks]
            figures["expand_tree_click_max_ms"] = round(details["expand_tree"]["maxClickMs"])
            step = "type into the text filter"
            outcome = _measure(driver, "text filter", _filter_body("filter-text", "1", "change"))
            figures["text_filter_ms"] = round(outcome["ms"])
            details["text_filter_listed"] = outcome["result"]["listed"]
            _measure(driver, "clear text filter", _filter_body("filter-text", "", "change"))
            step = "apply the 'wrong' filter"
            outcome = _measure(driver, "filter", _filter_body("filter-outcome", "wrong", "change"))
            figures["filter_ms"] = round(outcome["ms"])
            details["filter_listed"] = outcome["result"]["listed"]
            step = "read long tasks and memory"
            bench = driver.execute_script("return {longtasks: window.__bench.longtasks,"
                                          " windows: window.__bench.windows}")
            # a task overlapping the window: the action's own task starts just before it
            by_action = {name: round(max((d for s, d in bench["longtasks"]
                                          if s <= b and s + d >= a), default=0.0))
                         for name, (a, b) in bench["windows"].items()}
            # the bulk 'expand root' runs many clicks in one task on purpose: not a user's task
            figures["longest_task_ms"] = max((ms for name, ms in by_action.items()
                                              if name not in BULK_ACTIONS), default=0)
            details["longest_task_by_action_ms"] = by_action
            details["longest_task_any_action_ms"] = round(max(
                (d for s, d in bench["longtasks"] if s >= actions_start), default=0.0))
            details["longest_load_task_ms"] = round(max(
                (d for s, d in bench["longtasks"] if s < actions_start), default=0.0))
            figures["js_heap_end_mib"] = _heap_mib(driver)
            figures.update(_browser_rss(driver))
    except Exception as error:  # noqa: BLE001 - report where the browser part broke, go on
        details["error"] = f"{step}: {type(error).__name__}: {str(error).strip()[:600]}"
    return figures, details


# ---- one size, and the tables --------------------------------------------------------------

def run_size(problems: int, samples: int, keep: Path | None, timeout_s: float, seed: int
             ) -> dict:
    """One row: settings, figures (flat), and the synthetic data's, build's and browser's
    details; ``errors`` says what broke, and where."""
    label = f"{problems}x{samples}"
    row: dict = {"size": label, "settings": {"problems": problems, "samples": samples,
                                             "budgets": budgets_for(samples), "width": WIDTH,
                                             "beam_rounds": BEAM_ROUNDS, "seed": seed},
                 "figures": {}, "errors": []}
    figures = row["figures"]
    base = Path(tempfile.mkdtemp(prefix="ttscale-report-scale-")) if keep is None else keep
    folder = base / f"p{problems}-n{samples}"
    run_dir, html = folder / "run", folder / "report.html"
    try:
        marker = folder / "synthetic.json"
        wanted = json.dumps(row["settings"], sort_keys=True)
        reuse = marker.exists() and marker.read_text() == wanted
        if reuse and (run_dir / "records.jsonl").exists():
            print(f"[{label}] reusing {run_dir}", flush=True)
            row["data"] = json.loads((folder / "synthetic-stats.json").read_text())
        else:
            print(f"[{label}] synthesising {run_dir}", flush=True)
            row["data"] = synthesise(run_dir, problems, samples, seed)
            (folder / "synthetic-stats.json").write_text(json.dumps(row["data"]))
            marker.write_text(wanted)
        print(f"[{label}] {row['data']}", flush=True)
        print(f"[{label}] building {html}", flush=True)
        try:
            build = run_build(run_dir, html)
        except Exception as error:  # noqa: BLE001 - a failed build is a result
            row["errors"].append(f"build: {error}")
            return row
        figures.update({key: build[key] for key in ("build_s", "html_mb",
                                                    "build_peak_rss_mib")})
        row["build_phases"] = build["phases"]
        print(f"[{label}] build {build['build_s']} s, {build['html_mb']} MB, "
              f"peak RSS {build['build_peak_rss_mib']} MiB", flush=True)
        print(f"[{label}] browsing", flush=True)
        browser, row["browser_details"] = measure_browser(html, problems, samples, timeout_s)
        figures.update(browser)
        if "error" in row["browser_details"]:
            row["errors"].append("browser: " + row["browser_details"]["error"])
        print(f"[{label}] {json.dumps(figures)}", flush=True)
    except Exception:  # noqa: BLE001 - keep the other sizes' rows
        row["errors"].append(traceback.format_exc()[-2000:])
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
        else:
            row["kept"] = str(folder)
    return row


def _pair(row: dict, total: str, slowest: str) -> str | None:
    figures = row["figures"]
    if total not in figures:
        return None
    return f"{figures[total]} ({figures.get(slowest)})"


def _figure(name: str):
    return lambda row: row["figures"].get(name)


COLUMNS = (
    ("P×N", lambda r: r["size"]),
    ("records MB", lambda r: r.get("data", {}).get("records_mb")),
    ("tree nodes", lambda r: r.get("data", {}).get("tree_nodes")),
    ("build s", _figure("build_s")),
    ("build peak RSS MiB", _figure("build_peak_rss_mib")),
    ("HTML MB", _figure("html_mb")),
    ("load→ready ms", _figure("load_to_ready_ms")),
    ("trees tab ms", _figure("tab_trees_ms")),
    ("open problem ms (first, mid, last)",
     lambda r: ", ".join(map(str, r["figures"].get("open_problem_ms", []))) or None),
    ("bon@N tab ms", _figure("bon_tab_ms")),
    ("beam@N tab ms", _figure("beam_tab_ms")),
    ("expand 20 ms (slowest click)", lambda r: _pair(r, "expand_ms", "expand_click_max_ms")),
    ("expand root ms (1 task)", _figure("expand_root_ms")),
    ("expand tree ms (slowest click)",
     lambda r: _pair(r, "expand_tree_ms", "expand_tree_click_max_ms")),
    ("text filter ms", _figure("text_filter_ms")),
    ("filter ms", _figure("filter_ms")),
    ("longest task ms", _figure("longest_task_ms")),
    ("JS heap MiB", _figure("js_heap_mib")),
    ("browser RSS MiB", _figure("browser_rss_mib")),
)


def _cell(value) -> str:
    return "—" if value is None else str(value)


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        "## HTML report at scale",
        "",
        f"Machine: {machine['cpus']} CPUs, {machine['memory_gib']} GiB, {machine['platform']}, "
        f"Python {machine['python']}, Chromium {machine['chromium']} (headless). Load average "
        f"before the run: {machine['load_average']}.",
        "",
        "Synthetic runs (`benchmarks/report_scale.py`): P problems, each with a pool of N "
        "samples written as pooled bon and majority records at budgets 4, 16, 64, … N, and a "
        f"beam record at n=N, width {WIDTH}, {BEAM_ROUNDS} rounds of N steps. Browser times run "
        "from just before the action until a task after the next animation frame. 'open' is "
        "`openProblem(i)` of a problem not opened before (the viewer shows its beam@N search "
        "first); 'bon@N tab' and 'beam@N tab' switch the last problem's search; 'expand 20' "
        "clicks up to 20 collapsed rows of the beam@N tree, one click per task (slowest click "
        "in brackets); 'expand root' shows every child of the beam root (its 'show more' "
        "pages) and opens each, all in one task; 'expand tree' shift-clicks every child of the "
        "root, one per task (opening the whole tree); 'text filter' types \"1\" into the text "
        "filter; 'filter' applies the 'wrong' outcome filter (the list and the open problem "
        "re-render). 'longest task' is the longest `longtask` entry during these actions, "
        "except the one-task 'expand root'. JS heap is after opening the three problems; "
        "browser RSS is every chromium process at the end.",
        "",
        "Timings are noisy: the machine is shared (other processes, e.g. test runs, may run "
        "at the same time), and one pass is measured per size. Compare rows of one invocation.",
        "",
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in result["rows"]:
        lines.append("| " + " | ".join(_cell(get(row)) for _, get in COLUMNS) + " |")
    lines += ["", "Build time by phase (s) and peak RSS after the phase (MiB):", ""]
    lines.append("| P×N | " + " | ".join(BUILD_PHASES) + " |")
    lines.append("|" + "|".join("---" for _ in range(len(BUILD_PHASES) + 1)) + "|")
    for row in result["rows"]:
        phases = row.get("build_phases", {})
        cells = [f"{phases[p]['s']} / {phases[p]['peak_rss_mib_after']}" if p in phases else "—"
                 for p in BUILD_PHASES]
        lines.append(f"| {row['size']} | " + " | ".join(cells) + " |")
    problems = [(row["size"], text) for row in result["rows"] for text in row["errors"]]
    unshown = []
    for row in result["rows"]:
        details = row.get("browser_details", {})
        unshown += [f"- {row['size']}: problem {entry['problem']} opened without its chosen "
                    "answer's chain shown (no `.chosen-leaf` row)"
                    for entry in details.get("open_problem", []) if not entry["chosen_leaf_shown"]]
        if details.get("bon_tab") and not details["bon_tab"]["chosenShown"]:
            unshown.append(f"- {row['size']}: the bon@N search of the last problem opened "
                           "without its chosen answer's chain shown (no `.chosen-leaf` row)")
    if problems or unshown:
        lines += ["", "Problems:", ""]
        lines += [f"- {size}: {text.strip().splitlines()[-1]}" for size, text in problems]
        lines += unshown
    return "\n".join(lines) + "\n"


def _machine(chromium_version: str | None) -> dict:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = float("nan")
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(memory, 1), "python": platform.python_version(),
            "chromium": chromium_version,
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        problems, _, samples = part.strip().lower().partition("x")
        if not samples:
            raise SystemExit(f"--sizes takes PxN pairs like 50x64 (got {part!r})")
        sizes.append((int(problems), int(samples)))
    return sizes


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--build-child":
        build_child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=500, help="P, problems")
    parser.add_argument("--samples", type=int, default=256, help="N, samples per problem")
    parser.add_argument("--sizes", default=None,
                        help="several sizes in one invocation, e.g. 50x64,500x256 "
                             "(overrides --problems and --samples)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the run folders and reports under this folder (and reuse "
                             "run folders already synthesised there with the same settings)")
    parser.add_argument("--out", type=Path, default=RESULTS / "report_scale.json",
                        help="the JSON file to write; the Markdown table goes beside it (.md)")
    parser.add_argument("--browser-timeout", type=float, default=600.0,
                        help="seconds for the page load and for each measured action")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    sizes = _parse_sizes(args.sizes) if args.sizes else [(args.problems, args.samples)]
    for problems, samples in sizes:
        if problems < 1 or samples < 4:
            raise SystemExit(f"need at least 1 problem and 4 samples (got {problems}x{samples})")
    machine = _machine(None)
    rows = [run_size(problems, samples, args.keep, args.browser_timeout, args.seed)
            for problems, samples in sizes]
    machine["chromium"] = next((row["browser_details"]["chromium"] for row in rows
                                if row.get("browser_details", {}).get("chromium")), None)
    result = {"machine": machine, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print()
    print(text)
    print(f"written: {args.out}, {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
