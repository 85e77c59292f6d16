"""One writer per run folder: a second process on a folder being written is refused with a
clear message, and a killed writer leaves no stale lock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fakes import ScriptedPolicy
from reliability_log import log_case
from ttscale.errors import RunStateError
from ttscale.prompts import PromptFormat
from ttscale.records import RunFolderLock
from ttscale.run.runner import DatasetSelection, RunConfig, run_sync

HOLD = ("import sys; from pathlib import Path; from ttscale.records import RunFolderLock; "
        "lock = RunFolderLock(Path(sys.argv[1])).__enter__(); print('locked', flush=True); "
        "sys.stdin.read()")


def tiny_run(folder, tmp_path):
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text(json.dumps({"id": "p1", "problem": "What is 3 + 4?", "answer": "7"})
                       + "\n")
    policy = ScriptedPolicy(lambda prefix, j, stop: ("3 + 4 = 7. The answer is 7.", "eos"))
    config = RunConfig(dataset=DatasetSelection(name=str(dataset)), methods=("majority",),
                       budgets=(2,), scorer="none")
    return run_sync(config, policy, None, folder, PromptFormat())


def test_a_second_writer_in_the_same_process_is_refused_until_the_first_is_done(tmp_path):
    folder = tmp_path / "run"
    with RunFolderLock(folder):
        with pytest.raises(RunStateError, match=r"being written by another ttscale process "
                                                r"\(pid \d+\).*another --out"):
            RunFolderLock(folder).__enter__()
    with RunFolderLock(folder):  # released on exit
        pass


def test_a_run_is_refused_while_another_process_writes_and_resumes_once_it_is_killed(
        tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunStateError, match=f"pid {holder.pid}"):
            tiny_run(folder, tmp_path)
        assert not (folder / "records.jsonl").exists()  # refused before writing anything
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    outcome = tiny_run(folder, tmp_path)  # no stale lock
    assert outcome.new_records == 1
    log_case("one writer per run folder", "a second process on a folder being written; its "
             "holder SIGKILLed", lost=0, duplicated=0, crashes=0,
             result="refused naming the holder's pid; no stale lock after the kill")
