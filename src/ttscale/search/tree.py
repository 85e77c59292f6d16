"""The search tree: every step any method generated, with its score and fate.

Records keep the whole tree so that a report can show why a search chose what it chose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ttscale.steps import Step

NodeStatus = Literal["open", "kept", "pruned", "finished", "truncated"]


@dataclass
class Node:
    id: int
    parent: int | None
    step: Step | None  # None for the root (the problem prompt)
    depth: int
    group: int = 0  # DVTS subtree; 0 elsewhere
    score: float | None = None
    status: NodeStatus = "open"
    finish_reason: str | None = None
    children: list[int] = field(default_factory=list)
    # how a reasoning policy's thought ended on this path (thinking budget, early exit)
    thinking: dict | None = None

    def to_dict(self) -> dict:
        entry = {
            "id": self.id,
            "parent": self.parent,
            "depth": self.depth,
            "group": self.group,
            "text": self.step.text if self.step else "",
            "tokens": self.step.generated_tokens if self.step else 0,
            "score": self.score,
            "status": self.status,
            "finish_reason": self.finish_reason,
        }
        if self.step is not None and self.step.thought:  # only reasoning policies think
            entry["thought"] = True
        if self.thinking is not None:
            entry["thinking"] = self.thinking
        return entry


class Tree:
    def __init__(self) -> None:
        self.nodes: list[Node] = [Node(id=0, parent=None, step=None, depth=0, status="kept")]

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add_child(self, parent: Node, step: Step, group: int | None = None) -> Node:
        node = Node(
            id=len(self.nodes),
            parent=parent.id,
            step=step,
            depth=parent.depth + 1,
            group=parent.group if group is None else group,
        )
        self.nodes.append(node)
        parent.children.append(node.id)
        return node

    def path(self, node: Node) -> list[Node]:
        """Nodes from the root's first child down to ``node``."""
        chain: list[Node] = []
        current: Node | None = node
        while current is not None and current.parent is not None:
            chain.append(current)
            current = self.nodes[current.parent]
        return chain[::-1]

    def steps(self, node: Node) -> list[Step]:
        return [n.step for n in self.path(node) if n.step is not None]

    def to_dict(self) -> list[dict]:
        return [node.to_dict() for node in self.nodes]
