"""The search-tree viewer's data: a small index of problems, and one compressed chunk per
problem that the page decodes only when the problem is opened, so that a report of 500
problems x 256 samples opens without parsing every tree.

A chunk is gzip-compressed JSON, base64-encoded:

    {"id", "problem", "reference", "level", "bin",
     "runs": [null | {"trees": [[[id, parent, group, status, tokens, text, finish], ...], ...],
                      "searches": [{"method", "n", "width", "scorer", "aggregation",
                                    "answer", "correct", "pass", "selected", "flops",
                                    "seconds", "tokens", "tree", "ids", "scores",
                                    "candidates": [[node, answer, correct, score], ...],
                                    "plan": {...} | absent, "note": "what the method
                                    decided, in words" | absent}, ...]}]}

``runs`` follows the report's runs (null where a run lacks the problem). Pooled records
(Best-of-N and majority at several budgets drawn from one pool of samples) share one node
table: each search names its own nodes (``ids``) and their scores (``scores``, aligned)."""

from __future__ import annotations

import base64
import gzip
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ttscale.datasets import load_dataset
from ttscale.errors import TTScaleError
from ttscale.report.curves import Bins
from ttscale.report.method_notes import method_note
from ttscale.report.runs import RunData
from ttscale.report.summary import method_rank

logger = logging.getLogger(__name__)

STATUS_CODES = {"open": "o", "kept": "k", "pruned": "p", "finished": "f", "truncated": "t"}
TITLE_CHARS = 140


@dataclass(frozen=True)
class ViewerData:
    index: dict  # {"runs": [...], "searches": [...], "problems": [...]}
    chunks: list[str]  # base64 gzip JSON, one per problem, in index order


def problem_texts(runs: Sequence[RunData]) -> dict[str, str]:
    """Problem statements from each run's dataset (records keep ids, not texts)."""
    texts: dict[str, str] = {}
    for name in {(run.manifest.get("dataset_selection") or {}).get("name") for run in runs}:
        if not name:
            continue
        try:
            dataset = load_dataset(name)
        except (TTScaleError, OSError) as error:
            logger.warning("problem texts of dataset %s unavailable (%s): the viewer shows "
                           "ids only", name, error)
            continue
        texts.update({problem.id: problem.problem for problem in dataset.problems})
    return texts


def _search_label(record: dict) -> str:
    return f"{record['method']}@{record['n']}"


def _label_rank(label: str) -> tuple[tuple[int, str], int]:
    method, _, n = label.partition("@")
    return (method_rank(method), int(n or 0))


def _node_row(node: dict) -> list:
    """[id, parent, group, status, tokens, text] (+ finish reason) (+ a reasoning policy's
    thought: {"thought": true} on its steps, and how it ended on a solution's last node)."""
    row = [node["id"], node["parent"], node.get("group", 0),
           STATUS_CODES.get(node.get("status"), "o"), node.get("tokens", 0), node.get("text", "")]
    thought = {key: node[key] for key in ("thought", "thinking") if node.get(key)}
    if node.get("finish_reason") or thought:
        row.append(node.get("finish_reason"))
    if thought:
        row.append(thought)
    return row


def _run_part(run: RunData, records: list[dict]) -> dict:
    """One run's searches of one problem. Pooled records share one node table."""
    trees: list[list[list]] = []
    pooled_tree: dict[int, list] | None = None
    pooled_index: int | None = None
    searches = []
    records = sorted(records, key=lambda r: _label_rank(_search_label(r)))
    for record, nodes in zip(records, run.trees(records), strict=True):
        if record.get("pool_size") is not None:
            if pooled_tree is None:
                pooled_tree, pooled_index = {}, len(trees)
                trees.append([])
            for node in nodes:
                if node["id"] not in pooled_tree:
                    pooled_tree[node["id"]] = _node_row(node)
            tree_index = pooled_index
        else:
            tree_index = len(trees)
            trees.append([_node_row(node) for node in nodes])
        ledger = record.get("ledger") or {}
        search = {
            "method": record["method"], "n": record["n"], "width": record.get("width"),
            "scorer": record.get("scorer"),
            "aggregation": "/".join(str(v) for v in (record.get("aggregation") or {}).values()),
            "answer": record.get("answer"), "correct": bool(record["correct"]),
            "pass": bool(record.get("pass_at_n")), "selected": record.get("selected"),
            "flops": ledger.get("total_flops"), "seconds": record.get("seconds"),
            "tokens": (ledger.get("policy_tokens") or {}).get("generated"),
            "tree": tree_index,
            "ids": [node["id"] for node in nodes],
            "scores": [node.get("score") for node in nodes],
            "candidates": [[c.get("node"), c.get("answer"), bool(c.get("correct")),
                            c.get("score")] for c in record["candidates"]],
        }
        if record.get("plan"):
            search["plan"] = record["plan"]
        note = method_note(record)
        if note:
            search["note"] = note
        searches.append(search)
    if pooled_tree is not None:
        trees[pooled_index] = [pooled_tree[key] for key in sorted(pooled_tree)]
    return {"trees": trees, "searches": searches}


def encode_chunk(data: dict) -> str:
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=4, mtime=0)).decode("ascii")


def decode_chunk(chunk: str) -> dict:
    return json.loads(gzip.decompress(base64.b64decode(chunk)).decode("utf-8"))


def viewer_data(runs: Sequence[RunData], bins: Bins) -> ViewerData:
    texts = problem_texts(runs)
    per_run: list[dict[str, list[dict]]] = []
    order: dict[str, None] = {}
    for run in runs:
        grouped: dict[str, list[dict]] = {}
        for record in run.records:
            grouped.setdefault(record["problem_id"], []).append(record)
            order.setdefault(record["problem_id"], None)
        per_run.append(grouped)
    labels = sorted({_search_label(r) for run in runs for r in run.records}, key=_label_rank)
    problems, chunks = [], []
    for pid in order:
        first = next(group[pid][0] for group in per_run if pid in group)
        text = texts.get(pid)
        results = [{_search_label(r): int(bool(r["correct"])) for r in group[pid]}
                   if pid in group else None for group in per_run]
        problems.append({
            "id": pid,
            "title": (text or pid)[:TITLE_CHARS],
            "bin": bins.of_problem.get(pid),
            "level": first.get("level"),
            "results": results,
        })
        chunks.append(encode_chunk({
            "id": pid, "problem": text, "reference": first.get("reference"),
            "level": first.get("level"), "bin": bins.of_problem.get(pid),
            "runs": [_run_part(run, group[pid]) if pid in group else None
                     for run, group in zip(runs, per_run, strict=True)],
        }))
    index = {
        "runs": [{"id": run.run_id, "digest": run.digest, "policy": run.policy,
                  "scorer": run.scorer, "path": str(run.path)} for run in runs],
        "searches": labels,
        "problems": problems,
        "bins": list(bins.names),
    }
    return ViewerData(index, chunks)
