"""What the fault and fuzz tests met, for ``benchmarks/reliability.py``: with
``TTSCALE_RELIABILITY_LOG`` set to a file, each test case appends one JSON line (its fault or
input class, how many cases, and what happened); otherwise nothing is written."""

from __future__ import annotations

import json
import os

import pytest

LOG_ENV = "TTSCALE_RELIABILITY_LOG"
# set by conftest's report hook: whether a test's body passed (a fixture logs only then)
CALL_PASSED = pytest.StashKey[bool]()


def log_case(area: str, case: str, cases: int = 1, **outcome: int | str) -> None:
    """``outcome``: counts such as ``lost``, ``duplicated``, ``crashes``, ``server_errors``
    (what the test measured, after its assertions held), and ``result``: what ttscale did."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"area": area, "case": case, "cases": cases, **outcome}) + "\n")
