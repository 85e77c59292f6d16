"""The CLI's answers to bad input: one clear line and exit code 2, before any model loads."""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from ttscale.cli.main import app
from ttscale.errors import ConfigError

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
            (("--prm", "prm9"), "unknown PRM 'prm9'"),
            (("--prm", "qwen-prm"), "qwen-prm needs a checkpoint: --prm qwen-prm:/path"),
            (("--prm", "arith:/tmp/x"), "arith takes no path"),
            (("--prm", "skywork:/nonexistent/prm"), "PRM path /nonexistent/prm does not exist"),
            (("--prm", "http://127.0.0.1:9", "--prm-format", "rlhflow"),
             "unknown PRM format for http 'rlhflow'"),
            (("--step-agg", "median"), "unknown step aggregation 'median'"),
            (("--method", "bon", "--prm", "none"), "method bon needs a scorer"),
            (("--limit", "0"), "limit"),
            (("--model", "/nonexistent/model.gguf", "--limit", "1"),
             "model file /nonexistent/model.gguf does not exist"),
            (("--engine", "openai", "--limit", "1"), "needs --base-url"),
            (("--engine", "vllm", "--limit", "1"), "--engine vllm needs --model"),
            (("--engine", "sglang", "--limit", "1"), "unknown engine 'sglang'"),
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


def test_prms_lists_every_scorer_and_format():
    result = _run("prms")
    assert result.exit_code == 0, result.output
    for spec in ("self", "arith", "judge", "agreement", "qwen-prm:PATH", "math-shepherd:PATH",
                 "rlhflow:PATH", "skywork:PATH", "http://HOST:PORT", "<extra_0>"):
        assert spec in result.output


def test_methods_lists_every_registered_method(monkeypatch):
    from ttscale.search import METHODS

    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    result = _run("methods")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
            if line.count("│") > 2 and line.split("│")[1].strip()}  # not a wrapped line
    assert set(rows) == set(METHODS)
    for name, spec in METHODS.items():
        assert spec.summary[:40] in rows[name]


def test_a_prm_of_the_wrong_architecture_fails_before_any_model_loads(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}))
    # the policy path is bad too: the PRM must be refused first, before anything loads
    result = _run("run", "--prm", f"qwen-prm:{tmp_path}", "--model", "/nonexistent.gguf",
                  "--limit", "1")
    assert result.exit_code == 2, result.output
    assert "architecture MistralForCausalLM" in result.output
    assert "qwen-prm format expects Qwen2ForProcessRewardModel" in result.output


def test_prm_serve_refuses_a_format_it_cannot_pool():
    result = _run("prm", "serve", "--prm", "rlhflow:/models/x")
    assert result.exit_code == 2, result.output
    assert "FORMAT qwen-prm or math-shepherd" in result.output


# -- sampling presets ---------------------------------------------------------------------------
def _run_options(*args: str) -> dict:
    """The run command's options as it parses them, its click context included."""
    import typer

    from ttscale.cli.main import app

    command = typer.main.get_command(app).commands["run"]
    ctx = command.make_context("run", list(args))
    return {**ctx.params, "ctx": ctx}


def test_a_sampling_preset_sets_what_the_user_did_not():
    from ttscale.cli.options import search_settings, with_sampling_preset

    def settings(*args):
        return search_settings(**{k: v for k, v in with_sampling_preset(_run_options(*args))
                                  .items() if k in ("temperature", "top_p")})

    plain = settings()
    assert (plain.temperature, plain.top_p) == (0.7, 1.0)  # presets are not defaults
    r1 = settings("--sampling", "r1")
    assert (r1.temperature, r1.top_p) == (0.6, 0.95)
    mixed = settings("--sampling", "qwen3", "--top-p", "0.9")
    assert (mixed.temperature, mixed.top_p) == (0.7, 0.9)  # what is given explicitly wins
    with pytest.raises(ConfigError, match="unknown sampling preset 'r2'"):
        settings("--sampling", "r2")


# -- particle temperature -------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["run", "--limit", "1"],
    ["solve", "What is 2 + 3?"],
    ["plan", "calibrate", "--out", "unused-study", "--limit", "4"],
    ["serve"],
])
def test_every_searching_command_takes_the_particle_temperature_and_checks_it(command,
                                                                              tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run(*command, "--particle-temperature", "0")
    assert result.exit_code == 2, result.output
    assert "particle_temperature must be above 0" in result.output
    assert not (tmp_path / "unused-study").exists()  # refused before anything was written


def test_a_run_records_the_particle_temperature_it_was_given():
    from ttscale.cli.run import prepare_run

    job = prepare_run(_run_options("--method", "pf", "--n", "4", "--prm", "arith",
                                   "--particle-temperature", "8", "--limit", "1"))
    assert job.config.settings.particle_temperature == 8.0
    assert job.config.settings.identity()["particle_temperature"] == 8.0
    plain = prepare_run(_run_options("--method", "pf", "--n", "4", "--limit", "1"))
    assert plain.config.settings.particle_temperature == 1.0
