"""Which units the continuous-batching loop decodes: those admitted to the cache, admitted
from the waiting queue in order while samples, sequence slots and cells allow, and pushed back
(the newest first) when the cells run short."""

from __future__ import annotations

import logging
from collections import deque

from ttscale.engines.batch_work import Call, PrefixWork, Unit, units_of
from ttscale.engines.kv_slots import KVSlots
from ttscale.engines.kv_tree import common_prefix_length
from ttscale.errors import ContextLengthError

# the decode loop logs under one name, whichever of its parts speaks
logger = logging.getLogger("ttscale.engines.continuous_batching")

# a prefix waits one batch for one being computed when that shares this many more tokens
WAIT_GAIN = 8


class BatchSchedule:
    def __init__(self, slots: KVSlots, max_live: int, stats: dict[str, int]) -> None:
        """``max_live``: samples decoded at once at most; ``stats`` counts push-backs."""
        self.slots = slots
        self.max_live = max_live
        self.stats = stats
        self.waiting: deque[Unit] = deque()
        self.admitted: list[Unit] = []
        self._order = 0

    def enqueue(self, prefix: PrefixWork) -> None:
        n_ctx = self.slots.backend.n_ctx
        self.waiting.extend(units_of(prefix, n_ctx, self.max_live, self.slots.tree.n_seq))

    def has_work(self) -> bool:
        return bool(self.waiting or self.admitted)

    def live_count(self) -> int:
        return sum(len(u.samples) for u in self.admitted)

    def calls(self) -> list[Call]:
        """The calls of every unit, admitted or waiting."""
        return [u.prefix.call for u in [*self.admitted, *self.waiting]]

    def clear(self) -> None:
        self.admitted.clear()
        self.waiting.clear()

    def admit(self) -> None:
        deferred: list[Unit] = []
        while self.waiting:
            unit = self.waiting[0]
            if self.admitted and self.live_count() + len(unit.samples) > self.max_live:
                break
            if self._better_after_prefill(unit):
                deferred.append(self.waiting.popleft())
                continue
            if not self.slots.place(unit, self.live_count()):
                if not self.admitted:  # it cannot fit even alone: fail its call only
                    self.waiting.popleft()
                    unit.prefix.call.fail(ContextLengthError(
                        f"a prefix of {len(unit.prefix.tokens)} tokens with "
                        f"{len(unit.samples)} samples does not fit the KV cache "
                        f"({self.slots.backend.n_ctx} cells, {self.slots.tree.n_seq} sequences)"))
                    continue
                break
            self._order += 1
            unit.order = self._order
            self.waiting.popleft()
            self.admitted.append(unit)
        self.waiting.extendleft(reversed(deferred))

    def _better_after_prefill(self, unit: Unit) -> bool:
        """Whether a prefix now being computed shares much more with this one than the cache
        holds: waiting one batch then saves computing the shared part twice."""
        tokens = unit.prefix.tokens
        held = None
        for other in self.admitted:
            if other.prefilling:
                held = self.slots.tree.match(tokens).length if held is None else held
                if common_prefix_length(other.prefix.tokens, tokens) > held + WAIT_GAIN:
                    return True
        return False

    def make_room(self) -> bool:
        """Free cells: evict every idle sequence, else push back the most recently admitted
        unit. False when nothing can be freed."""
        if self.slots.tree.idle():
            self.slots.release_idle()
            return True
        if len(self.admitted) < 2:
            return False
        unit = max(self.admitted, key=lambda u: u.order)
        self.admitted.remove(unit)
        self.slots.release_unit(unit)
        # all its samples are drawn again (their streams are fixed, so they come out the
        # same); the prefix tokens it computed stay charged
        again = Unit(unit.prefix, unit.samples,
                     charged=unit.charged + max(0, unit.cursor - unit.reused))
        self.waiting.appendleft(again)
        self.stats["pushed_back"] += 1
        logger.info("KV cache full: pushed back a unit of %d samples", len(unit.samples))
        return True

    def drop_abandoned(self) -> None:
        """Forget the work of calls that failed or whose caller stopped waiting."""
        for unit in [u for u in self.admitted if u.prefix.call.dropped]:
            self.admitted.remove(unit)
            self.slots.release_unit(unit)
        if any(u.prefix.call.dropped for u in self.waiting):
            self.waiting = deque(u for u in self.waiting if not u.prefix.call.dropped)

    def trim_idle(self) -> None:
        self.slots.trim_idle(self.waiting)
