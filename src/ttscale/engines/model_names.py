"""What a model's name tells of its size, for the FLOPs ledger of engines whose backend does
not report a parameter count (an HTTP server, vLLM)."""

from __future__ import annotations

import re

_UNIT_SCALE = {"m": 10**6, "b": 10**9, "t": 10**12}
# A size such as "7B", "1.5b", "135M": not glued to a preceding letter, digit or dot (so the "5"
# of "Qwen2.5" or the "7B" inside "1.7B" never match alone) and not followed by a letter/digit.
_SIZE_PATTERN = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)([bBmMtT])(?![A-Za-z0-9])")
# Mixture-of-experts names ("Mixtral-8x7B", "Qwen3-30B-A3B"): the size in the name is not the
# parameter count that a FLOPs estimate needs, so none is guessed.
_MOE_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])\d+x\d+(?:\.\d+)?[bBmM](?![A-Za-z0-9])|(?<![A-Za-z0-9])[aA]\d+(?:\.\d+)?[bB]"
    r"(?![A-Za-z0-9])"
)


def parameters_from_name(name: str) -> int | None:
    """The parameter count stated in a model name, or ``None``.

    ``"Qwen2.5-Math-7B-Instruct"`` -> 7e9, ``"Qwen/Qwen2.5-Math-1.5B-Instruct"`` -> 1.5e9,
    ``"SmolLM2-135M-Instruct"`` -> 135e6, ``"llama3.1:70b"`` -> 70e9. A billions-sized match wins
    over a millions-sized one (``"Qwen2.5-7B-Instruct-1M"`` is 7B; the "1M" is its context).
    Mixture-of-experts names give ``None``."""
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if _MOE_PATTERN.search(base):
        return None
    matches = [(float(num), unit.lower()) for num, unit in _SIZE_PATTERN.findall(base)]
    for wanted in ("t", "b", "m"):
        for num, unit in matches:
            if unit == wanted and num > 0:
                return int(round(num * _UNIT_SCALE[unit]))
    return None
