"""Progress bars on stderr while a run, a study or a labelling goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ttscale.cli.console import console


def progress_display():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def counted(display, label: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that moves one bar of ``display``."""
    task = display.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        display.update(task, completed=done, total=total)

    return advance


def labelled(display) -> Callable[[str, int, int], None]:
    """A ``(label, done, total)`` callback: one bar per label, added when first seen."""
    tasks: dict[str, int] = {}

    def advance(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = display.add_task(label, total=total)
        display.update(tasks[label], completed=done, total=total)

    return advance


def run_with_progress(config, policy, scorer, run_dir, prompt, plan=None, parallel=None):
    from ttscale.run.runner import run

    with progress_display() as display:
        advance = counted(display, "problems")
        extra = {} if parallel is None else {"parallel": parallel}
        return asyncio.run(run(config, policy, scorer, run_dir, prompt, on_problem_done=advance,
                               plan=plan, **extra))


def run_on_ray_with_progress(config, cluster, worker, run_dir, prompt, plan, parallel):
    from ttscale.run.distributed import run_on_ray

    with progress_display() as display:
        return run_on_ray(config, cluster, worker, run_dir, prompt,
                          on_problem_done=counted(display, "problems"), plan=plan,
                          parallel=parallel)
