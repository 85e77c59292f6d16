"""How llama-cpp-python is loaded: passive OpenMP waiting unless the user chose, and the
default thread count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ttscale.engines.llama_library import default_flash_attn, default_threads

PROBE = ("import os; from ttscale.engines.llama_library import import_llama_cpp; "
         "import_llama_cpp(); print(os.environ.get('OMP_WAIT_POLICY'))")


def wait_policy_after_import(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_llama_cpp_threads_wait_passively_unless_the_user_chose():
    assert wait_policy_after_import() == "PASSIVE"
    assert wait_policy_after_import(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    # a tuned spin count is the user's choice too: no policy is forced on top of it
    assert wait_policy_after_import(GOMP_SPINCOUNT="10000") == "None"


def test_default_threads_come_from_the_environment_or_the_cpus(monkeypatch):
    monkeypatch.delenv("TTSCALE_THREADS", raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("TTSCALE_THREADS", "1")
    assert default_threads() == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("TTSCALE_THREADS", bad)
        with pytest.raises(ValueError, match="TTSCALE_THREADS"):
            default_threads()


def test_the_attention_kernel_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("TTSCALE_FLASH_ATTN", raising=False)
    assert default_flash_attn() == "auto"
    monkeypatch.setenv("TTSCALE_FLASH_ATTN", " OFF ")
    assert default_flash_attn() == "off"
    monkeypatch.setenv("TTSCALE_FLASH_ATTN", "plain")
    with pytest.raises(ValueError, match="TTSCALE_FLASH_ATTN must be auto, on or off"):
        default_flash_attn()
