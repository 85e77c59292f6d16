"""The model name a request sends: the served name, or the served name behind a search prefix
for clients that cannot send extra fields: ``beam-16/MODEL`` (beam search, N = 16),
``dvts-16x4/MODEL`` (DVTS, N = 16, M = 4), ``greedy/MODEL``."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ttscale.search import METHODS
from ttscale.serve.refusals import invalid, model_not_found

SERVED_METHODS = tuple(METHODS)
_PREFIX = re.compile(r"^(?P<method>[a-z][a-z_]*)(?:-(?P<budget>\d+)(?:x(?P<width>\d+))?)?$")


class ModelName(NamedTuple):
    """The name as the client wrote it (echoed back), and what its prefix sets (None: unset)."""

    name: str
    method: str | None = None
    budget: int | None = None
    width: int | None = None


def read_model_name(model: Any, served: str) -> ModelName:
    if not isinstance(model, str) or not model:
        raise invalid(f"'model' is required: send \"{served}\", or \"beam-16/{served}\" to "
                      "choose the search in the name")
    if model == served:
        return ModelName(model)
    prefix, _, rest = model.partition("/")
    match = _PREFIX.fullmatch(prefix)  # `$` alone lets a final newline through
    if rest != served or match is None:
        raise model_not_found(f"The model `{model}` does not exist. This server serves "
                              f"`{served}`, optionally prefixed with a search: "
                              f"`beam-16/{served}`, `dvts-16x4/{served}`, "
                              f"`greedy/{served}`.")
    method = match["method"]
    if method not in SERVED_METHODS:
        raise invalid(f"unknown method `{method}` in the model name; use one of "
                      f"{', '.join(SERVED_METHODS)}, e.g. beam-16/{served}")
    budget = int(match["budget"]) if match["budget"] else None
    width = int(match["width"]) if match["width"] else None
    return ModelName(model, method, budget, width)
