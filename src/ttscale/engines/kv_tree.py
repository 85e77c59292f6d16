"""Which KV cells an in-process engine holds, as a tree of tokens shared along prefixes.

llama.cpp keeps one KV cache for all sequences (``kv_unified``): a cell holds one token at one
position and belongs to every sequence that was copied from the one that computed it. This
module mirrors that layout so the engine can

* find, for a new prefix, the longest run of its tokens some sequence already holds (and
  copy those cells instead of computing them again): the problem prompt, a beam's previous
  steps, the few-shot examples every problem shares;
* count the cells in use exactly, to admit work only when it fits;
* keep finished sequences as a cache and evict the least recently used one when a slot or
  cells are needed.

Each physical cell is a node; a node's parent is the cell before it in every sequence that
holds it. Two sequences that computed the same token separately hold two nodes, which
are both indexed (``children`` lists them); matching follows the first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class Cell:
    __slots__ = ("token", "depth", "parent", "children", "holders")

    def __init__(self, token: int, depth: int, parent: Cell | None) -> None:
        self.token = token
        self.depth = depth  # the cell's position + 1: the length of the prefix it ends
        self.parent = parent
        self.children: dict[int, list[Cell]] = {}
        self.holders: set[int] = set()


@dataclass
class SeqState:
    id: int
    path: list[Cell] = field(default_factory=list)  # the cells it holds, by position
    busy: bool = True  # being decoded into; idle sequences are a cache and may be evicted
    last_used: int = 0


@dataclass(frozen=True)
class Match:
    length: int  # how many leading tokens are held
    holder: int | None  # a sequence holding them (None when length == 0)


class KVTree:
    def __init__(self, n_seq: int) -> None:
        self.n_seq = n_seq
        self.clear()

    def clear(self) -> None:
        self.root = Cell(-1, 0, None)
        self.cells = 0
        self.seqs: dict[int, SeqState] = {}
        self._free = list(range(self.n_seq - 1, -1, -1))
        self._clock = 0

    # -- reading -------------------------------------------------------------------------------
    def match(self, tokens: Sequence[int], prefer_idle: bool = True) -> Match:
        """The longest prefix of ``tokens`` held by some sequence, and one that holds it (an
        idle one when there is one, since an idle sequence can be taken over)."""
        cell = self.root
        for token in tokens:
            children = cell.children.get(token)
            if not children:
                break
            cell = children[0]
        if cell is self.root:
            return Match(0, None)
        holders = sorted(cell.holders)
        if prefer_idle:
            holders.sort(key=lambda s: (self.seqs[s].busy, len(self.seqs[s].path)))
        return Match(cell.depth, holders[0])

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def idle(self) -> list[SeqState]:
        """Idle sequences, least recently used first."""
        return sorted((s for s in self.seqs.values() if not s.busy), key=lambda s: s.last_used)

    # -- changing ------------------------------------------------------------------------------
    def allocate(self) -> int:
        if not self._free:
            raise RuntimeError("no free sequence slot")
        seq = self._free.pop()
        self.seqs[seq] = SeqState(seq)
        return seq

    def copy(self, source: int, target: int, length: int) -> None:
        """``target`` (empty) now also holds ``source``'s first ``length`` cells."""
        state = self.seqs[target]
        assert not state.path, "copy into an empty sequence only"
        state.path = self.seqs[source].path[:length]
        for cell in state.path:
            cell.holders.add(target)
        self.touch(source)

    def append(self, seq: int, token: int) -> None:
        """``seq`` computed ``token`` at its next position: a new cell."""
        path = self.seqs[seq].path
        parent = path[-1] if path else self.root
        cell = Cell(token, len(path) + 1, parent)
        parent.children.setdefault(token, []).append(cell)
        cell.holders.add(seq)
        path.append(cell)
        self.cells += 1

    def truncate(self, seq: int, length: int) -> None:
        """``seq`` drops its cells from position ``length`` on."""
        state = self.seqs[seq]
        for cell in state.path[length:]:
            self._drop(cell, seq)
        del state.path[length:]

    def release(self, seq: int) -> None:
        """``seq`` drops every cell and its slot is free again."""
        self.truncate(seq, 0)
        del self.seqs[seq]
        self._free.append(seq)

    def set_idle(self, seq: int) -> None:
        self.seqs[seq].busy = False
        self.touch(seq)

    def set_busy(self, seq: int) -> None:
        self.seqs[seq].busy = True
        self.touch(seq)

    def touch(self, seq: int) -> None:
        self._clock += 1
        self.seqs[seq].last_used = self._clock

    def _drop(self, cell: Cell, seq: int) -> None:
        cell.holders.discard(seq)
        if not cell.holders:
            self.cells -= 1
            siblings = cell.parent.children[cell.token]  # type: ignore[union-attr]
            siblings.remove(cell)
            if not siblings:
                del cell.parent.children[cell.token]  # type: ignore[union-attr]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length
