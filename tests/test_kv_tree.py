"""The KV cell tree mirrors llama.cpp's unified cache: copies share cells, a cell lives while
any sequence holds it, and a prefix is found in whichever sequence holds it."""

from __future__ import annotations

import pytest

from ttscale.engines.kv_tree import KVTree


def grow(tree: KVTree, seq: int, tokens: list[int]) -> None:
    for token in tokens:
        tree.append(seq, token)


def test_copies_share_cells_and_cells_live_while_held() -> None:
    tree = KVTree(4)
    a = tree.allocate()
    grow(tree, a, [1, 2, 3, 4])
    b = tree.allocate()
    tree.copy(a, b, 3)  # b holds a's cells for 1, 2, 3
    grow(tree, b, [9, 9])
    assert tree.cells == 4 + 2
    tree.release(a)  # the shared cells stay (b holds them); a's own cell 4 goes
    assert tree.cells == 5 and tree.free_slots == 3
    assert tree.match([1, 2, 3, 9, 9, 7]).length == 5
    assert tree.match([1, 2, 3, 4]).length == 3  # cell 4 is gone with a
    tree.truncate(b, 1)
    assert tree.cells == 1 and tree.match([1, 2]).length == 1
    tree.release(b)
    assert tree.cells == 0 and tree.free_slots == 4 and tree.match([1]).length == 0


def test_match_prefers_an_idle_holder_with_little_to_cut() -> None:
    tree = KVTree(4)
    a = tree.allocate()
    grow(tree, a, [1, 2, 3, 4, 5, 6])
    b = tree.allocate()
    tree.copy(a, b, 3)
    tree.set_idle(b)
    match = tree.match([1, 2, 3, 8])
    assert (match.length, match.holder) == (3, b)  # a is busy; b idle and shortest
    tree.set_idle(a)
    assert [s.id for s in tree.idle()] == [b, a]  # least recently used first


def test_separately_computed_tokens_are_separate_cells() -> None:
    tree = KVTree(2)
    a, b = tree.allocate(), tree.allocate()
    grow(tree, a, [1, 2])
    grow(tree, b, [1, 2])  # the same tokens, computed again: other cells
    assert tree.cells == 4
    assert tree.match([1, 2]).holder == a  # the first computed is found first
    tree.release(a)
    match = tree.match([1, 2])  # b's cells are found once a's are gone
    assert tree.cells == 2 and (match.length, match.holder) == (2, b)
    tree.allocate()
    with pytest.raises(RuntimeError, match="no free sequence slot"):
        tree.allocate()
