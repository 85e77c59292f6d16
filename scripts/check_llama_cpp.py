"""Check that the installed llama.cpp build runs on this CPU: decode a few tokens of the embedded
model in a child process, so that a build that crashes (an instruction set the compiler saw but
the machine does not allow, e.g. AMX tiles under a hypervisor that does not enable them) is
reported as a failed check instead of a segmentation fault in the first run.

``make install`` runs it after installing; on failure it rebuilds llama-cpp-python from source
without pip's wheel cache (a wheel cached from another build is what usually crashes) and
checks again.

Usage: ``python scripts/check_llama_cpp.py``; exit status 0 when the build runs, 1 otherwise.
"""

from __future__ import annotations

import signal
import subprocess
import sys

DECODE_A_FEW_TOKENS = """
from llama_cpp import Llama
from ttscale.engines.embedded import embedded_model_path
llm = Llama(str(embedded_model_path()), n_ctx=256, n_threads=1, verbose=False)
llm("1 + 1 =", max_tokens=4, temperature=0.0)
"""


def main() -> int:
    child = subprocess.run([sys.executable, "-c", DECODE_A_FEW_TOKENS], capture_output=True,
                           text=True)
    if child.returncode == 0:
        print("llama.cpp build: runs on this CPU")
        return 0
    if child.returncode < 0:
        cause = f"killed by {signal.Signals(-child.returncode).name}"
    else:
        tail = child.stderr.strip().splitlines()[-1:] or ["no message"]
        cause = f"exit status {child.returncode}: {tail[0]}"
    print(f"llama.cpp build: fails on this CPU ({cause}); rebuild llama-cpp-python from "
          "source without pip's cache (make install does this once by itself)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
