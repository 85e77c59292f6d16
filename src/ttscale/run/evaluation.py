"""From a search's candidates to a graded run record.

A record keeps every candidate with its answer, correctness and step scores, the tree of
steps, the ledger, and the answer under every aggregation the scores allow, so that reports
can compare aggregations without new generations."""

from __future__ import annotations

from collections.abc import Sequence

from ttscale.compute import Ledger
from ttscale.datasets import Problem
from ttscale.grading import grade
from ttscale.search.aggregate import choose
from ttscale.search.result import Candidate
from ttscale.search.tree import Tree
from ttscale.settings import ANSWER_AGGREGATIONS, STEP_AGGREGATIONS, SearchSettings

RECORD_VERSION = 1


def record_key(problem_id: str, method: str, n: int) -> str:
    return f"{problem_id}|{method}|{n}"


def _tree_for(tree: Tree, candidates: Sequence[Candidate], pooled: bool) -> list[dict]:
    """The record's tree. A pooled subset keeps only its own candidates' chains, with the scores
    this record gave them."""
    if not pooled:
        return tree.to_dict()
    keep = {0}
    scores: dict[int, float | None] = {}
    for candidate in candidates:
        path = tree.path(tree.nodes[candidate.node_id])
        for k, node in enumerate(path):
            keep.add(node.id)
            if candidate.step_scores is not None and k < len(candidate.step_scores):
                scores[node.id] = candidate.step_scores[k]
    nodes = []
    for node in tree.nodes:
        if node.id in keep:
            data = node.to_dict()
            data["score"] = scores.get(node.id)
            nodes.append(data)
    return nodes


def build_record(
    *,
    problem: Problem,
    method: str,
    n: int,
    width: int | None,
    scorer_name: str | None,
    settings: SearchSettings,
    candidates: Sequence[Candidate],
    tree: Tree,
    ledger: Ledger,
    seconds: float,
    pooled: bool,
    pool_size: int | None = None,
) -> dict:
    graded = {}
    for candidate in candidates:
        answer = candidate.answer
        if answer not in graded:
            graded[answer] = grade(answer, problem.answer)
    step_mode, answer_mode = settings.step_aggregation, settings.answer_aggregation
    selection, solution_scores = choose(candidates, step_mode, answer_mode)
    scored = bool(candidates) and all(c.step_scores is not None for c in candidates)
    answer = selection.answer
    return {
        "version": RECORD_VERSION,
        "key": record_key(problem.id, method, n),
        "problem_id": problem.id,
        "dataset": problem.dataset,
        "level": problem.level,
        "subject": problem.subject,
        "method": method,
        "n": n,
        "width": width,
        "scorer": scorer_name,
        "aggregation": {"step": step_mode if scored else None,
                        "answer": answer_mode if scored else "majority"},
        "answer": answer,
        "reference": problem.answer,
        "correct": bool(graded.get(answer, False)) if answer is not None else False,
        "selected": selection.index,
        "votes": selection.votes,
        "pass_at_n": any(graded.get(c.answer, False) for c in candidates if c.answer),
        "by_aggregation": _by_aggregation(candidates, graded, scored),
        "candidates": [_candidate_entry(c, graded, solution_scores[i] if scored else None)
                       for i, c in enumerate(candidates)],
        "tree": _tree_for(tree, candidates, pooled),
        "ledger": ledger.to_dict(),
        "seconds": round(seconds, 4),
        "pool_size": pool_size,
        # whole solutions drawn under a thinking budget say so (records without one unchanged)
        **({"thinking_budget": settings.thinking_budget} if settings.thinking_budget else {}),
    }


def _by_aggregation(candidates: Sequence[Candidate], graded: dict, scored: bool) -> dict:
    """The answer, and whether it is right, under every aggregation the scores allow."""
    combos = [("-", "majority")] + ([(s, a) for s in STEP_AGGREGATIONS
                                     for a in ANSWER_AGGREGATIONS if a != "majority"]
                                    if scored else [])
    by_aggregation = {}
    for s_mode, a_mode in combos:
        chosen, _ = choose(candidates, s_mode, a_mode)
        by_aggregation[f"{s_mode}/{a_mode}"] = {
            "answer": chosen.answer,
            "correct": bool(graded.get(chosen.answer, False)) if chosen.answer else False,
        }
    return by_aggregation


def _candidate_entry(c: Candidate, graded: dict, score: float | None) -> dict:
    return {
        "node": c.node_id,
        "answer": c.answer,
        "correct": bool(graded.get(c.answer, False)) if c.answer else False,
        "score": score,
        "step_scores": list(c.step_scores) if c.step_scores is not None else None,
        "finish_reason": c.finish_reason,
        "steps": len(c.steps),
        "generated_tokens": c.generated_tokens,
        "group": c.group,
        **(_thought_entry(c) if any(s.thought for s in c.steps) else {}),
    }


def _thought_entry(c: Candidate) -> dict:
    """A reasoning policy's thought, told apart from its answer; only candidates that think
    carry it, so records of other policies stay as they were."""
    thought = [s for s in c.steps if s.thought]
    return {"thought": {"steps": len(thought), "tokens": sum(s.generated_tokens for s in thought),
                        "answer_part": not c.ends_in_thought, **(c.thinking or {})}}
