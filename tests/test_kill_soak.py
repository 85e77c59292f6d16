"""The kill soak (``benchmarks/kill_soak.py``) at a small size: a real ``ttscale run`` and a
real ``ttscale prm label`` on the embedded model, SIGKILLed at random moments and resumed, end
with the records of an uninterrupted run, byte for byte but for their timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parents[1] / "benchmarks" / "kill_soak.py"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_killed_and_resumed_jobs_end_with_the_uninterrupted_records(tmp_path):
    results = tmp_path / "results"
    subprocess.run([sys.executable, str(SOAK), "--jobs", "run,label", "--kills", "3",
                    "--seed", "7", "--work", str(tmp_path / "work"), "--results", str(results)],
                   check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    soaked = json.loads((results / "kill_soak.json").read_text())
    for job in ("run", "label"):
        outcome = soaked["jobs"][job]
        assert outcome["kills"] == 3 and outcome["crashes"] == 0
        comparison = outcome["comparison"]
        assert comparison["records"] > 0
        assert (comparison["lost"], comparison["duplicated"], comparison["differing"]) == (
            0, 0, 0), comparison
        assert all(life["duplicated"] == 0 for life in outcome["lives"])
