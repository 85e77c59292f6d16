"""``ttscale ladder``: write difficulty-ladder word problems as a dataset file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import fail, out
from ttscale.errors import TTScaleError

LADDER_LEVELS = "1-5"
LADDER_PER_LEVEL = 100
LADDER_SEED = 0


def ladder(
    out_file: Annotated[Path, typer.Argument(help="the JSONL file to write")],
    levels: Annotated[str, typer.Option(help="levels = operations per problem, e.g. 1-5 or "
                                             "1,3")] = LADDER_LEVELS,
    per_level: Annotated[int, typer.Option(help="problems per level")] = LADDER_PER_LEVEL,
    seed: Annotated[int, typer.Option(help="the same seed writes the same problems")] =
        LADDER_SEED,
) -> None:
    """Write difficulty-ladder word problems (1, 2, 3, … operations, every intermediate
    quantity recorded) as a dataset for `ttscale run --dataset FILE`. Problems identical to
    the built-in test split's are never written, so a file made for training stays apart
    from it."""
    from ttscale.datasets import load_dataset
    from ttscale.datasets.ladder import generate, parse_levels, write_jsonl

    try:
        test_texts = [p.problem for p in load_dataset("ladder")]
        problems = generate(parse_levels(levels), per_level, seed,
                            prefix=f"ladder-s{seed}", exclude=test_texts)
        write_jsonl(problems, out_file)
    except (TTScaleError, ValueError, OSError) as error:
        fail(str(error))
    out.print(f"wrote {len(problems)} problems ({per_level} per level, levels {levels}, seed "
              f"{seed}) to {out_file}", highlight=False)
