"""``ttscale run --ray``: the same run on a Ray cluster (extra ``ray``).

Each Ray actor owns a policy engine and its scorer, with the CPUs and GPUs it asks for. The
driver (the process that runs ``ttscale run``) opens the run folder exactly as a local run
does, then hands out work one problem at a time: a problem with the (method, budget) jobs it
still needs, which keeps Best-of-N and majority vote answered from one pool of samples as in
a local run. Each actor holds at most ``parallel`` problems at once, whose engine calls batch
together inside it, and gets the next as soon as one finishes, so a slow actor does not hold
the run back.

Only the driver writes records (appended and fsynced as each problem comes back), so a
record is never written twice and a killed driver resumes like a local run. An actor that
dies (its process killed, its node lost) is restarted by Ray with its model reloaded; the
problems it held are handed to the actors still up and redone from scratch, since a problem
in flight has written nothing. A problem whose actor died under it ``MAX_ATTEMPTS`` times is
reported as failed rather than retried forever (it may be what kills them).

Records match a local run's under the same seed: every engine draws sample ``j`` of a prefix
from a stream fixed by the seed, the prefix and ``j``, whichever process draws it. With
``parallel`` 1 each problem starts from an empty prefix cache and the records are the same
bit for bit; with more they are the same up to floating-point rounding, as locally."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ttscale.datasets import Problem
from ttscale.engines import EngineSpec, ModelInfo, load_policy
from ttscale.errors import ConfigError, EngineError
from ttscale.planner.plan import Plan
from ttscale.prompts import PromptFormat
from ttscale.records import RECORDS_FILE, RecordWriter, RunFolderLock
from ttscale.rewards import ScorerOptions, load_scorer
from ttscale.run.runner import (
    DEFAULT_PARALLEL,
    ProgressHook,
    RunConfig,
    RunOutcome,
    RunTally,
    open_run,
    problem_solver,
)
from ttscale.settings import SearchSettings

logger = logging.getLogger(__name__)

# times a problem is handed out again after the actor holding it died, before it is
# reported as failed
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class RayCluster:
    """Where and how wide to run. ``address`` None connects to the cluster that
    ``RAY_ADDRESS`` names, else starts a local Ray on this machine."""

    address: str | None = None
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    max_restarts: int = 3  # times Ray restarts one actor that died

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ConfigError(f"--actors must be at least 1, got {self.actors}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise ConfigError("--cpus-per-actor must be positive and --gpus-per-actor at "
                              f"least 0, got {self.cpus_per_actor} and {self.gpus_per_actor}")
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts must be at least 0, got {self.max_restarts}")


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor builds at start (and again after a restart)."""

    engine: EngineSpec
    scorer: str
    scorer_options: ScorerOptions


@dataclass(frozen=True)
class ShardContext:
    """What every problem is solved under: sent once to the object store, not per problem."""

    config: RunConfig
    settings: SearchSettings
    prompt: PromptFormat
    plan: Plan | None
    parallel: int
    token: str  # one per run: an actor's solver (and its batching) is shared within a run


class ShardWorker:
    """The body of one Ray actor: a policy and a scorer, solving the problems handed to it.

    Its ``solve`` is a coroutine: Ray runs an actor with async methods on one event loop, so
    the problems it holds at once batch their engine calls together as in a local run."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.policy = load_policy(spec.engine)
        self.scorer = load_scorer(spec.scorer, policy=self.policy, options=spec.scorer_options)
        self._solvers: dict[str, Any] = {}

    def describe(self) -> dict:
        """This actor's process and model, for the run's manifest and for fault tests."""
        return {"pid": os.getpid(), "info": self.policy.info}

    async def solve(self, context: ShardContext, problem: Problem,
                    jobs: Sequence[tuple[str, int]]) -> list[dict]:
        # one solver per run, made inside the actor's event loop (each call deserializes its
        # own copy of the context, so identity cannot tell runs apart)
        key = context.token
        if key not in self._solvers:
            self._solvers = {key: problem_solver(
                context.config, self.policy, self.scorer, context.settings, context.prompt,
                context.plan, context.parallel)}
        return await self._solvers[key]((problem, list(jobs)))


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ConfigError("--ray needs Ray: pip install 'ttscale[ray]'") from error
    return ray


def worker_engine(engine: EngineSpec, cluster: RayCluster) -> EngineSpec:
    """The engine an actor loads: llama.cpp gets as many threads as the actor has CPUs
    (more would busy-wait against the other actors on the same node)."""
    if engine.kind == "llama.cpp" and engine.n_threads is None:
        return replace(engine, n_threads=max(1, int(cluster.cpus_per_actor)))
    return engine


def run_on_ray(
    config: RunConfig,
    cluster: RayCluster,
    worker: WorkerSpec,
    run_dir: Path | Callable[[ModelInfo], Path],
    prompt: PromptFormat,
    on_problem_done: ProgressHook | None = None,
    plan: Plan | None = None,
    parallel: int = DEFAULT_PARALLEL,
    on_actors_ready: Any = None,
) -> RunOutcome:
    """Run ``config`` on Ray actors into ``run_dir``: the records, manifest and resumption of
    a local run. ``run_dir`` may be a function of the model the actors loaded (the driver
    loads none). ``on_actors_ready`` is called with the actors' ``describe()`` once they
    are up (a hook for monitoring and fault tests)."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    if not (cluster.address or os.environ.get("RAY_ADDRESS")) and "ray" not in sys.modules:
        # a local Ray binds the loopback address, as every server of ttscale's does unless
        # told otherwise; Ray reads this switch when it is imported
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _import_ray()
    started_ray = not ray.is_initialized()
    if started_ray:
        _start_ray(ray, cluster)
    actors: list[Any] = []
    try:
        spec = replace(worker, engine=worker_engine(worker.engine, cluster))
        remote_worker = ray.remote(ShardWorker).options(
            num_cpus=cluster.cpus_per_actor, num_gpus=cluster.gpus_per_actor,
            max_restarts=cluster.max_restarts, max_task_retries=0)
        actors = [remote_worker.remote(spec) for _ in range(cluster.actors)]
        described = _describe(ray, actors)
        infos = {repr(d["info"]) for d in described}
        if len(infos) > 1:
            raise ConfigError("the actors loaded different models (" + "; ".join(sorted(infos))
                              + "): give every node the same model files")
        if on_actors_ready is not None:
            on_actors_ready(described)
        info = described[0]["info"]
        if callable(run_dir):
            run_dir = run_dir(info)
        with RunFolderLock(run_dir):  # one writer per run folder
            opened = open_run(config, info, run_dir, prompt, plan)
            context = ray.put(ShardContext(config, opened.settings, prompt, opened.plan,
                                           parallel, token=uuid.uuid4().hex))
            with RecordWriter(run_dir / RECORDS_FILE) as writer:
                tally = RunTally(opened, writer)
                _Dispatcher(ray, actors, context, parallel, tally, len(opened.problems),
                            on_problem_done).run(opened.todo)
            return tally.outcome()
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started_ray:
            ray.shutdown()


def _start_ray(ray, cluster: RayCluster) -> None:
    address = cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # a local Ray on this machine: no dashboard, a small object store (records are small)
    ray.init(include_dashboard=False, object_store_memory=256 * 2**20,
             num_cpus=max(os.cpu_count() or 1, int(cluster.actors * cluster.cpus_per_actor)))


def _describe(ray, actors: list) -> list[dict]:
    try:
        return ray.get([actor.describe.remote() for actor in actors])
    except (*_actor_errors(ray), ray.exceptions.RayTaskError) as error:
        raise EngineError(f"a Ray actor failed to start: {_cause(error)}") from error


def _actor_errors(ray) -> tuple[type[BaseException], ...]:
    """The errors of a call whose actor died or cannot be reached (not of its code)."""
    names = ("RayActorError", "ActorUnavailableError")
    return tuple(getattr(ray.exceptions, name) for name in names
                 if hasattr(ray.exceptions, name))


def _cause(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:500]


class _Dispatcher:
    """Hands out problems to the actors that have room and collects what comes back."""

    def __init__(self, ray, actors: list, context, parallel: int, tally: RunTally,
                 total: int, on_problem_done: ProgressHook | None) -> None:
        self.ray, self.actors, self.context, self.parallel = ray, actors, context, parallel
        self.tally, self.total, self.on_problem_done = tally, total, on_problem_done
        self.load = [0] * len(actors)
        self.usable = [True] * len(actors)  # False while a died actor restarts, or for good
        self.retired = [False] * len(actors)
        self.attempts: dict[str, int] = {}
        self.in_flight: dict[Any, tuple[int, tuple[Problem, list] | None]] = {}

    def run(self, todo: list[tuple[Problem, list[tuple[str, int]]]]) -> None:
        queue = deque()
        for problem, jobs in todo:
            if jobs:
                queue.append((problem, jobs))
            else:  # finished before: counted, as in a local run
                self._finished(problem, [], None)
        while queue or self.in_flight:
            self._hand_out(queue)
            if not self.in_flight:
                raise EngineError(f"every Ray actor died for good; {len(queue)} problems were "
                                  "not run: rerun the same command to finish them")
            [ready], _ = self.ray.wait(list(self.in_flight), num_returns=1)
            index, item = self.in_flight.pop(ready)
            if item is None:
                self._pinged(index, ready)
                continue
            self.load[index] -= 1
            self._collect(index, item, ready, queue)

    def _hand_out(self, queue: deque) -> None:
        while queue:
            room = [i for i in range(len(self.actors))
                    if self.usable[i] and self.load[i] < self.parallel]
            if not room:
                return
            index = min(room, key=lambda i: self.load[i])
            problem, jobs = queue.popleft()
            ref = self.actors[index].solve.remote(self.context, problem, jobs)
            self.in_flight[ref] = (index, (problem, jobs))
            self.load[index] += 1

    def _collect(self, index: int, item: tuple[Problem, list], ref, queue: deque) -> None:
        problem, _ = item
        try:
            records = self.ray.get(ref)
        except _actor_errors(self.ray) as error:
            attempts = self.attempts[problem.id] = self.attempts.get(problem.id, 0) + 1
            if attempts >= MAX_ATTEMPTS:
                self._finished(problem, None, EngineError(
                    f"the Ray actor solving it died {attempts} times ({_cause(error)})"))
            else:
                logger.warning("Ray actor %d died holding problem %s; it is handed out again",
                               index, problem.id)
                queue.appendleft(item)
            self._check(index)
        except self.ray.exceptions.RayTaskError as error:
            cause = error.as_instanceof_cause() if hasattr(error, "as_instanceof_cause") else error
            self._finished(problem, None, getattr(error, "cause", None) or cause)
        else:
            self._finished(problem, records, None)

    def _check(self, index: int) -> None:
        """Stop handing work to an actor that died until it answers again (Ray restarts it;
        a call to an actor that will not restart fails at once)."""
        if not self.usable[index] or self.retired[index]:
            return
        self.usable[index] = False
        self.in_flight[self.actors[index].describe.remote()] = (index, None)

    def _pinged(self, index: int, ref) -> None:
        try:
            described = self.ray.get(ref)
        except _actor_errors(self.ray) as error:
            logger.error("Ray actor %d is gone for good (%s)", index, _cause(error))
            self.retired[index] = True
            return
        logger.warning("Ray actor %d is back (process %s)", index, described["pid"])
        self.usable[index] = True

    def _finished(self, problem: Problem, records, error) -> None:
        self.tally.add(problem, records, error)
        if self.on_problem_done:
            self.on_problem_done(self.tally.finished, self.total)
