"""The CLI's answers to bad input: one clear line and exit code 2, before any model loads."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from ttscale.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestBadInput:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (("--dataset", "gsm9k"), "unknown dataset 'gsm9k'. Did you mean 'gsm8k'?"),
            (("--method", "beamsearch"), "unknown method 'beamsearch'. Did you mean 'beam'?"),
            (("--method", "beam", "--n", "6", "--width", "4"),
             "budget N=6 is not a multiple of the beam width M=4"),
            (("--n", "four"), "--n must be comma-separated integers"),
            (("--scorer", "prm9"), "unknown scorer 'prm9'"),
            (("--step-agg", "median"), "unknown step aggregation 'median'"),
            (("--method", "bon", "--scorer", "none"), "method bon needs a scorer"),
            (("--limit", "0"), "limit"),
            (("--model", "/nonexistent/model.gguf", "--limit", "1"),
             "model file /nonexistent/model.gguf does not exist"),
            (("--engine", "openai", "--limit", "1"), "needs --base-url"),
            (("--engine", "vllm", "--limit", "1"), "unknown engine 'vllm'"),
        ],
    )
    def test_run_rejects_with_one_clear_line(self, args, expected):
        result = _run("run", *args)
        assert result.exit_code == 2, result.output
        assert expected in result.output
        assert "Traceback" not in result.output

    def test_model_that_is_not_gguf(self, tmp_path):
        fake = tmp_path / "model.gguf"
        fake.write_bytes(b"PK\x03\x04 not a gguf file")
        result = _run("run", "--model", str(fake), "--limit", "1")
        assert result.exit_code == 2
        assert "is not a GGUF file" in result.output

    def test_dataset_file_with_no_good_rows(self, tmp_path):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"question": "1+1?"}\nnot json\n')
        result = _run("run", "--dataset", str(bad))
        assert result.exit_code == 2
        assert "bad.jsonl" in result.output

    def test_endpoint_down(self):
        url = f"http://127.0.0.1:{_free_port()}/v1"
        result = _run("run", "--engine", "openai", "--base-url", url, "--limit", "1")
        assert result.exit_code == 2
        assert f"cannot reach the OpenAI-compatible server at {url}" in result.output

    def test_empty_problem(self):
        result = _run("solve", "   ")
        assert result.exit_code == 2
        assert "the problem text is empty" in result.output
