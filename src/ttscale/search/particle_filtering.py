"""Particle filtering and particle Gibbs over steps: Puri et al., "A Probabilistic Inference
Approach to Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods" (arXiv
2502.01618, 2025), following its reference implementation in its_hub (``ParticleFiltering`` and
``ParticleGibbs`` in ``particle_gibbs.py``) and the authors' code (``probabilistic-inference-
scaling``, ``sal/search/particle_gibbs.py``).

**Particle filtering** (``pf``, budget N = N particles). Every round, each particle that has not
finished samples one step from its own prefix (particles on the same node share one request for
their summed samples, so they draw distinct steps); the scorer scores each new path, and a
particle's weight is the softmax over particles of ``logit(s) / T``, where
``s`` is the score of its newest step (a PRM reads the whole prefix, so its newest score
judges the partial solution, as in both references), clipped to ``[SCORE_CLIP, 1 -
SCORE_CLIP]``, and ``T`` is the settings' ``particle_temperature``. At temperature 1 a
particle's weight is its odds ``s / (1 - s)``, normalized. Then N ancestors are drawn
(multinomial resampling, with replacement) and particle ``j`` of the next round continues
ancestor ``j``. Finished particles stay in the population with the weight of their final score,
as in the reference (its_hub; the authors' ``--resample-inactive``): they take part in every
resampling, are never extended again, and a finished particle drawn ``k`` times is ``k``
particles of the next round. So exactly N particles are alive in every round. The filter
stops once no particle is left to extend: after a round in which the last ones finished (no
resampling follows it), or after a resampling that drew only finished particles. The N final
particles (repeats included) are the candidates, each with its step scores, and the answer is
left to aggregation.

**Particle Gibbs** (``pgibbs``). The budget N is split into ``S = min(GIBBS_SWEEPS, N // 2)``
sweeps of ``N // S`` particles each (the first ``N mod S`` sweeps take one more), as its_hub's
``budget = num_iterations * num_particles``, the reference particle counted among them. The first
sweep is a particle filter; after each sweep one final particle is drawn by its weight as the
reference, and the next sweep is a conditional particle filter: the reference keeps its path
(its steps are not generated again), weighs in every round with the score of its step at that
depth (its final score once past its end), and can be drawn as an ancestor, in which case the
free particle continues from the reference's node at that depth. Each sweep samples with its
own seeds (``seed + sweep * max_depth``), so a sweep does not redraw the steps of the one
before.

Tree: every generated step is a node. After a resampling, an open step drawn as an ancestor is
``kept``, one drawn by no particle is ``pruned`` (resampled away); a step that ends its solution
stays ``finished`` (``truncated`` at the depth limit) whether or not it is drawn again. The
details (record key ``particles``) hold, per sweep and round, the nodes of the weighed
particles, their weights and the ancestor indices drawn, and each sweep's final particles and
reference.

Defaults and deviations:

- ``particle_temperature`` 1 by default (the authors' ``softmax_temp`` default; its_hub applies
  no temperature, i.e. 1), ``SCORE_CLIP = 1e-7`` (its_hub's clip before the logit). At 1 a
  coarse scorer's weights are extreme: a step scored 1 outweighs one scored 0.5 by about 10⁷,
  so one particle is copied into every slot and the population loses its diversity (the method
  study measured it with the ``arith`` scorer). At temperature T that ratio is about
  e^(16 / T). On ladder level 1 with ``arith``, ``pf@16`` rises from 22 % at 1 to 43 % at 16
  and falls back to 34 % at 64, where the weights are nearly flat
  (``benchmarks/results/particle-temperature.md``): the scorer helps once it no longer
  decides alone.
- Multinomial resampling in every round, as its_hub's default and the authors' code; no
  resampling after the last round (the authors' code; its_hub draws once more, which only adds
  noise to the final population).
- ``GIBBS_SWEEPS = 2``: both references default to a single sweep (plain particle filtering);
  two is the fewest that makes it particle Gibbs, and it keeps most of a budget in particles.
- The reference particle weighs in with its score at the current depth (the paper's conditional
  filter); its_hub's newer code weighs it with its final score in every round, and the authors'
  code reads its score one step ahead.
- Particle Gibbs returns the final particles of *every* sweep as candidates (N in all), not
  only the last sweep's (its_hub), so aggregation sees every solution the budget paid for, as
  for the other methods.
- Resampling draws come from a ``random.Random`` seeded from the search seed and the prompt, so
  a run is reproducible bit for bit; its_hub and the authors use the global generators.
- The weights read the newest step's score whatever ``step_aggregation`` says; that setting
  (and ``answer_aggregation``) still choose the answer among the final particles.
- Without a scorer every step scores 0.5 (as in beam search): resampling is then uniform."""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from ttscale.search.beam_search import BeamGroup, expand_round
from ttscale.search.context import SearchContext
from ttscale.search.result import Candidate, SearchResult, candidate_from_leaf
from ttscale.search.tree import Node
from ttscale.settings import SearchSettings

SCORE_CLIP = 1e-7  # scores are clipped to [SCORE_CLIP, 1 - SCORE_CLIP] before the logit
GIBBS_SWEEPS = 2  # particle Gibbs: sweeps the budget is split into (fewer for small budgets)
NEUTRAL_SCORE = 0.5  # every step's score when no scorer is given


# --------------------------------------------------------------------------------------------
# Weights and resampling
# --------------------------------------------------------------------------------------------


def resampling_weights(scores: Sequence[float],
                       temperature: float = SearchSettings.particle_temperature) -> list[float]:
    """The particles' resampling probabilities: softmax of ``logit(score) / temperature``."""
    logits = [_logit(score) / temperature for score in scores]
    top = max(logits)
    exps = [math.exp(value - top) for value in logits]  # shifted: no overflow
    total = math.fsum(exps)
    return [value / total for value in exps]


def _logit(score: float) -> float:
    clipped = min(max(score, SCORE_CLIP), 1 - SCORE_CLIP)
    return math.log(clipped / (1 - clipped))


def draw_ancestors(rng: random.Random, weights: Sequence[float], k: int) -> list[int]:
    """Multinomial resampling: ``k`` indices drawn independently, with replacement, each with
    probability ``weights[i]``."""
    return rng.choices(range(len(weights)), weights=weights, k=k)


def resampling_rng(ctx: SearchContext) -> random.Random:
    """The search's own generator, fixed by the seed and the problem's prompt."""
    key = f"particles\0{ctx.settings.seed}\0{ctx.prompt}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


# --------------------------------------------------------------------------------------------
# What the record keeps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticleRound:
    """One round: the nodes the particles stood on when weighed (the reference last), their
    weights, and the ancestor drawn for each free particle (None: every particle had finished,
    so nothing was drawn)."""

    nodes: tuple[int, ...]
    weights: tuple[float, ...]
    ancestors: tuple[int, ...] | None

    def to_dict(self) -> dict:
        return {"nodes": list(self.nodes), "weights": list(self.weights),
                "ancestors": None if self.ancestors is None else list(self.ancestors)}


@dataclass(frozen=True)
class ParticleSweep:
    """One sweep: its rounds, its final particles' leaves, and the index among them of the
    particle carried into the next sweep as the reference (None for the last sweep)."""

    rounds: tuple[ParticleRound, ...]
    final: tuple[int, ...]
    reference: int | None = None

    def to_dict(self) -> dict:
        return {"rounds": [r.to_dict() for r in self.rounds], "final": list(self.final),
                "reference": self.reference}


@dataclass(frozen=True)
class ParticleHistory:
    """Every resampling of a particle search, as the run record stores it."""

    record_key: ClassVar[str] = "particles"

    temperature: float
    sweeps: tuple[ParticleSweep, ...]

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "sweeps": [s.to_dict() for s in self.sweeps]}


# --------------------------------------------------------------------------------------------
# One sweep
# --------------------------------------------------------------------------------------------


def _done(node: Node) -> bool:
    return node.status in ("finished", "truncated")


async def _advance(
    ctx: SearchContext, particles: list[Node], depth: int, group: int,
    path_scores: dict[int, list[float]], reuse: Sequence[Candidate],
) -> tuple[list[Node], list[Node]]:
    """Every unfinished particle samples one step from its node; the new steps are scored.
    Returns the particles on their new nodes, and the new nodes."""
    live = [i for i, node in enumerate(particles) if not _done(node)]
    # a group keeping one path of width one asks for exactly one sample from its node
    groups = [BeamGroup(group, 1, 1, [particles[i]]) for i in live]
    children = await expand_round(ctx, groups, depth, depth == ctx.settings.max_depth, reuse)
    if ctx.scorer is not None:
        all_scores = await ctx.score([ctx.tree.steps(child) for child in children])
    else:
        all_scores = [[NEUTRAL_SCORE] * child.depth for child in children]
    for child, scores in zip(children, all_scores, strict=True):
        child.score = scores[-1]
        path_scores[child.id] = scores
    # a node's children come back in the order of the particles standing on it
    waiting: dict[int, deque[int]] = defaultdict(deque)
    for i in live:
        waiting[particles[i].id].append(i)
    advanced = list(particles)
    for child in children:
        advanced[waiting[child.parent].popleft()] = child  # type: ignore[index]
    return advanced, children


def _reference_at(reference: Sequence[Node], depth: int) -> list[Node]:
    """The reference particle's node at ``depth`` (its leaf once past its end)."""
    return [reference[min(depth, len(reference)) - 1]] if reference else []


def _mark_fates(children: Sequence[Node], drawn: set[int]) -> None:
    for child in children:
        if child.status == "open":
            child.status = "kept" if child.id in drawn else "pruned"


async def _sweep(
    ctx: SearchContext, rng: random.Random, free: int, reference: Sequence[Node],
    group: int, path_scores: dict[int, list[float]], reuse: Sequence[Candidate] = (),
) -> tuple[list[Node], list[ParticleRound]]:
    """A (conditional) particle filter: ``free`` particles from the root, plus the reference
    path when one is given. It ends once no particle is left to extend. Returns the final
    particles' leaves (the reference last) and the rounds."""
    particles = [ctx.tree.root] * free
    rounds: list[ParticleRound] = []
    depth = 0
    while True:
        depth += 1
        particles, children = await _advance(ctx, particles, depth, group, path_scores,
                                             reuse if depth == 1 else ())
        weighed = particles + _reference_at(reference, depth)
        weights = resampling_weights([node.score for node in weighed],  # type: ignore[misc]
                                     ctx.settings.particle_temperature)
        nodes = tuple(node.id for node in weighed)
        if all(_done(node) for node in particles):
            rounds.append(ParticleRound(nodes, tuple(weights), None))
            return particles + list(reference[-1:]), rounds
        ancestors = draw_ancestors(rng, weights, free)
        _mark_fates(children, {weighed[a].id for a in ancestors})
        particles = [weighed[a] for a in ancestors]
        rounds.append(ParticleRound(nodes, tuple(weights), tuple(ancestors)))
        if all(_done(node) for node in particles):  # only finished particles were drawn
            return particles + list(reference[-1:]), rounds


def _candidates(ctx: SearchContext, leaves: Sequence[Node],
                path_scores: dict[int, list[float]]) -> list[Candidate]:
    return [candidate_from_leaf(ctx.tree, leaf, path_scores.get(leaf.id)) for leaf in leaves]


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


async def particle_filtering(ctx: SearchContext, n: int) -> SearchResult:
    if n < 1:
        raise ValueError(f"the budget must be at least 1, got {n}")
    path_scores: dict[int, list[float]] = {}
    leaves, rounds = await _sweep(ctx, resampling_rng(ctx), n, (), 0, path_scores, ctx.reuse)
    history = ParticleHistory(ctx.settings.particle_temperature, (
        ParticleSweep(tuple(rounds), tuple(leaf.id for leaf in leaves)),))
    return SearchResult("pf", n, None, tuple(_candidates(ctx, leaves, path_scores)), ctx.tree,
                        ctx.ledger, details=history)


def gibbs_sweep_sizes(n: int) -> list[int]:
    """Particles per sweep: N split as evenly as possible over ``min(GIBBS_SWEEPS, N // 2)``
    sweeps (at least one), so that every sweep holds two particles or more."""
    sweeps = max(1, min(GIBBS_SWEEPS, n // 2))
    base, extra = divmod(n, sweeps)
    return [base + (1 if s < extra else 0) for s in range(sweeps)]


def _sweep_context(ctx: SearchContext, sweep: int) -> SearchContext:
    """The context a sweep samples with: the same tree and ledger, seeds of its own."""
    if sweep == 0:
        return ctx
    seed = ctx.settings.seed + sweep * ctx.settings.max_depth  # rounds use seed + depth - 1
    return replace(ctx, settings=replace(ctx.settings, seed=seed))


async def particle_gibbs(ctx: SearchContext, n: int) -> SearchResult:
    if n < 1:
        raise ValueError(f"the budget must be at least 1, got {n}")
    rng = resampling_rng(ctx)
    path_scores: dict[int, list[float]] = {}
    reference: list[Node] = []
    sweeps: list[ParticleSweep] = []
    candidates: list[Candidate] = []
    sizes = gibbs_sweep_sizes(n)
    for sweep, size in enumerate(sizes):
        free = size - (1 if reference else 0)  # the reference is one of the sweep's particles
        leaves, rounds = await _sweep(_sweep_context(ctx, sweep), rng, free, reference, sweep,
                                      path_scores,
                                      ctx.reuse if sweep == 0 else ())
        candidates += _candidates(ctx, leaves, path_scores)
        chosen = None
        if sweep < len(sizes) - 1:
            final_weights = resampling_weights(
                [leaf.score for leaf in leaves],  # type: ignore[misc]
                ctx.settings.particle_temperature)
            [chosen] = draw_ancestors(rng, final_weights, 1)
            reference = ctx.tree.path(leaves[chosen])
        sweeps.append(ParticleSweep(tuple(rounds), tuple(leaf.id for leaf in leaves), chosen))
    history = ParticleHistory(ctx.settings.particle_temperature, tuple(sweeps))
    return SearchResult("pgibbs", n, None, tuple(candidates), ctx.tree, ctx.ledger,
                        details=history)
