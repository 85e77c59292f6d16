"""The KV cache's sequences as the continuous-batching loop hands them out.

A unit's prefix is taken over or copied from the sequence that already holds most of it
(:mod:`ttscale.engines.kv_tree` finds it), idle sequences — finished samples kept as cache —
are evicted least recently used first when slots or cells run short, and the cells they hold
are kept within a bound so that attention stays cheap."""

from __future__ import annotations

from collections.abc import Iterable

from ttscale.engines.batch_work import Unit
from ttscale.engines.decode_backend import DecodeBackend
from ttscale.engines.kv_tree import KVTree

# an idle sequence is taken over (not copied) only when little of it would be cut away
ADOPT_SLACK = 4


class KVSlots:
    def __init__(self, backend: DecodeBackend, n_seq: int, idle_cells: int | None) -> None:
        self.backend = backend
        # the last sequence is scratch space for the padding row of one-row calls
        self.scratch_seq = n_seq - 1
        self.tree = KVTree(n_seq - 1)
        self.idle_cells = min(8192, backend.n_ctx // 2) if idle_cells is None else idle_cells

    def place(self, unit: Unit, live_count: int) -> bool:
        """Give the unit its sequences and its cached prefix; False when they do not fit.

        In order of preference: copy the cached prefix from the sequence holding it (taking
        that sequence over instead when little of it would be cut away), take it over anyway
        when slots are short, or start from nothing. ``live_count``: samples admitted before."""
        tree, tokens = self.tree, unit.prefix.tokens
        match = tree.match(tokens)
        # the last prefix token is always computed: its logits give the next token
        reuse = min(match.length, len(tokens) - 1)
        options: list[tuple[str, int]] = []
        if match.holder is not None:
            holder = tree.seqs[match.holder]
            if not holder.busy and len(holder.path) - reuse <= ADOPT_SLACK:
                options.append(("adopt", reuse))
            else:
                options.append(("copy", reuse))
                if not holder.busy:
                    options.append(("adopt", reuse))
        options.append(("fresh", 0))
        for how, reuse in options:
            need_slots = unit.slots - (how == "adopt")
            need_cells = len(tokens) - reuse + len(unit.samples) + live_count
            if how == "adopt":  # cutting the taken-over sequence back frees its tail
                need_cells -= len(tree.seqs[match.holder].path) - reuse
            protect = {match.holder} if how != "fresh" else set()
            if self.evict_for(need_slots, need_cells, protect):
                break
        else:
            return False
        if how == "adopt":
            seq = match.holder
            tree.set_busy(seq)
            self.backend.seq_remove(seq, reuse)
            tree.truncate(seq, reuse)
        else:
            seq = tree.allocate()
            if reuse:
                self.backend.seq_copy(match.holder, seq, 0, reuse)
                tree.copy(match.holder, seq, reuse)
        unit.seq, unit.cursor, unit.reused = seq, reuse, reuse
        unit.extra_seqs = [tree.allocate() for _ in range(len(unit.samples) - 1)]
        return True

    def evict_for(self, slots: int, cells: int, protect: set[int]) -> bool:
        """Evict idle sequences (least recently used first) until ``slots`` are free and
        ``cells`` more fit; False if that cannot be done."""
        def fits() -> bool:
            return self.tree.free_slots >= slots and self.tree.cells + cells <= self.backend.n_ctx

        for state in self.tree.idle():
            if fits():
                break
            if state.id not in protect:
                self.release(state.id)
        return fits()

    def copy_prefix(self, unit: Unit) -> None:
        """The unit's computed prefix, copied into each of its other sequences."""
        length = len(unit.prefix.tokens)
        for seq in unit.extra_seqs:
            self.backend.seq_copy(unit.seq, seq, 0, length)
            self.tree.copy(unit.seq, seq, length)

    def trim_idle(self, waiting: Iterable[Unit]) -> None:
        """Keep the cells that only finished sequences hold within ``idle_cells``: every cell
        in the cache is attended over (masked) by every row, so idle cells slow decoding
        (measured: 17k idle cells halve it). Sequences that waiting work would reuse stay."""
        if self.tree.cells <= self.idle_cells:
            return
        busy = len({id(c) for s in self.tree.seqs.values() if s.busy for c in s.path})
        if self.tree.cells - busy <= self.idle_cells:
            return
        soon = list(waiting)[:64]
        wanted = {self.tree.match(u.prefix.tokens).holder for u in soon}
        for state in self.tree.idle():
            if self.tree.cells - busy <= self.idle_cells:
                break
            if state.id not in wanted:
                self.release(state.id)

    def release(self, seq: int) -> None:
        self.backend.seq_remove(seq, 0)
        self.tree.release(seq)

    def release_unit(self, unit: Unit) -> None:
        for seq in unit.seqs:
            self.release(seq)

    def release_idle(self) -> None:
        for state in self.tree.idle():
            self.release(state.id)

    def clear(self) -> None:
        """Empty the cache, busy sequences too (after every call in flight failed)."""
        self.backend.memory_clear()
        self.tree.clear()
