"""What a search returns: every candidate solution, the tree and the ledger. The choice of the
final answer is left to aggregation, so one search can be read under every aggregation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from ttscale.compute import Ledger, TokenCount
from ttscale.grading import extract_answer
from ttscale.search.tree import Node, Tree
from ttscale.steps import Step


@dataclass(frozen=True)
class Candidate:
    node_id: int  # the leaf in the tree
    steps: tuple[Step, ...]
    step_scores: tuple[float, ...] | None  # None where the method ran no scorer
    finish_reason: str
    group: int = 0
    policy_tokens: TokenCount | None = None  # what this candidate alone cost, where separable
    thinking: dict | None = None  # how its thought ended, under a thinking budget or early exit

    @cached_property
    def answer(self) -> str | None:
        # read once: records, votes and every aggregation ask for it again. A candidate that
        # ends inside its thought (cut off, or closed with nothing after) states no answer.
        if not self.steps or self.steps[-1].thought:
            return None
        return extract_answer(self.steps[-1].text)

    @property
    def ends_in_thought(self) -> bool:
        return bool(self.steps) and self.steps[-1].thought

    @property
    def generated_tokens(self) -> int:
        return sum(s.generated_tokens for s in self.steps)


@dataclass(frozen=True)
class SearchResult:
    method: str
    n: int
    width: int | None
    candidates: tuple[Candidate, ...]
    tree: Tree
    ledger: Ledger
    # what the method decided on the way, for the record: what auto chose and why, how many
    # samples an adaptive method drew before it stopped
    details: Details | None = None


class Details(Protocol):
    """A method's account of what it decided, stored in the run record under ``record_key``."""

    record_key: str

    def to_dict(self) -> dict: ...


def candidate_from_leaf(
    tree: Tree, leaf: Node, scores: list[float] | None = None,
    policy_tokens: TokenCount | None = None,
) -> Candidate:
    """A candidate from a leaf; ``scores`` are the scorer's last scores for the whole path
    (else each node's own step score)."""
    path = tree.path(leaf)
    if scores is None and all(n.score is not None for n in path):
        scores = [n.score for n in path]  # type: ignore[misc]
    return Candidate(
        node_id=leaf.id,
        steps=tuple(n.step for n in path if n.step is not None),
        step_scores=tuple(scores) if scores is not None else None,
        finish_reason=leaf.finish_reason or leaf.status,
        group=leaf.group,
        policy_tokens=policy_tokens,
        thinking=leaf.thinking,
    )
