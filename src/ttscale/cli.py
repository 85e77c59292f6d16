"""The ``ttscale`` command line: run | demo | solve | prms | prm serve."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ttscale.errors import TTScaleError

app = typer.Typer(
    help="Compute-optimal test-time scaling: a policy writes step by step, a scorer scores "
         "each step, a search (Best-of-N, beam search, DVTS) joins them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)


def _csv(value: str, kind: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        _fail(f"{kind} is empty; give a comma-separated list")
    return items


def _ints(value: str, kind: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(value, kind))
    except ValueError:
        _fail(f"{kind} must be comma-separated integers, got {value!r}")
    raise AssertionError  # unreachable


def _unescape(text: str | None) -> str | None:
    return None if text is None else text.encode("utf-8").decode("unicode_escape")


# Options shared by run, demo and solve ----------------------------------------------------
EngineOpt = Annotated[str, typer.Option(help="llama.cpp (in-process, default), hf "
                                             "(transformers, in-process; extra hf) or openai "
                                             "(any OpenAI-compatible server: vLLM, SGLang, "
                                             "llama-server, Ollama)")]
ModelOpt = Annotated[str | None, typer.Option(
    help="GGUF path for llama.cpp (default: the embedded SmolLM2-135M), a model folder, "
         ".gguf file or hub name for --engine hf, or the served model name for --engine "
         "openai (default: the one the server lists)")]
DeviceOpt = Annotated[str, typer.Option(help="--engine hf device: cpu, cuda, cuda:N")]
DtypeOpt = Annotated[str, typer.Option(help="--engine hf weights: auto (bf16 on GPU, fp32 on "
                                            "CPU), float32, bfloat16, float16")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="server URL for --engine openai, e.g. "
                                                     "http://127.0.0.1:8000/v1")]
ParamsOpt = Annotated[float | None, typer.Option(
    "--params", help="policy parameter count for FLOPs, when the server does not say (7e9)")]
PromptOpt = Annotated[str, typer.Option(help="fewshot (plain few-shot, for small models) or "
                                             "chat (the paper's system prompt + chat template)")]
TemplateOpt = Annotated[str | None, typer.Option(
    help="chat template: chatml, llama3 or a .jinja file (default: the model's own)")]


PrmOpt = Annotated[str, typer.Option(
    "--prm", "--scorer",
    help="step scorer: self (policy confidence), arith (exact arithmetic checker), agreement, "
         "judge (the policy as a judge), FORMAT:PATH for a PRM checkpoint (qwen-prm, "
         "math-shepherd, rlhflow, skywork), http://HOST:PORT for a served PRM, or none. "
         "`ttscale prms` lists them")]
PrmDeviceOpt = Annotated[str, typer.Option(help="device of an in-process PRM: cpu, cuda, "
                                                "cuda:N")]
PrmDtypeOpt = Annotated[str, typer.Option(help="PRM weights: auto (bf16 on GPU, fp32 on CPU), "
                                               "float32, bfloat16, float16")]
PrmFormatOpt = Annotated[str, typer.Option(help="input format of a PRM behind --prm http://...: "
                                                "qwen-prm or math-shepherd")]
PrmParamsOpt = Annotated[float | None, typer.Option(
    "--prm-params", help="parameter count of a PRM behind --prm http://..., for FLOPs (7e9)")]
TrustOpt = Annotated[bool, typer.Option(help="let transformers run a checkpoint's own Python "
                                             "code, for --engine hf and in-process PRMs (off: "
                                             "ttscale applies PRM heads itself)")]


ThreadsOpt = Annotated[int | None, typer.Option(
    help="llama.cpp CPU threads (default: all cores; use fewer when other jobs share the "
         "machine: llama.cpp's threads busy-wait and slow down badly when a core is taken)")]


def _engine(engine: str, model: str | None, base_url: str | None, params: float | None,
            n_ctx: int = 32768, threads: int | None = None, device: str = "cpu",
            dtype: str = "auto", trust_remote_code: bool = False):
    from ttscale.engines import EngineSpec, load_policy

    spec = EngineSpec(kind=engine, model=model, base_url=base_url,
                      parameters=int(params) if params else None, n_ctx=n_ctx,
                      n_threads=threads, device=device, dtype=dtype,
                      trust_remote_code=trust_remote_code)
    return load_policy(spec)


def _scorer_options(device: str, dtype: str, http_format: str, trust: bool,
                    parameters: float | None = None):
    from ttscale.registry import parse_choice
    from ttscale.rewards import ScorerOptions

    parse_choice("PRM format for http", http_format, ("qwen-prm", "math-shepherd"))
    return ScorerOptions(device=device, dtype=dtype, trust_remote_code=trust,
                         http_format=http_format,
                         parameters=int(parameters) if parameters else None)


def _prompt(kind: str, template: str | None, policy):
    from ttscale.prompts import PromptFormat, resolve_chat_template

    chat_template = None
    if kind == "chat":
        chat_template = resolve_chat_template(template, policy.info.chat_template)
    return PromptFormat(kind=kind, chat_template=chat_template)


def _default_run_dir(config, policy) -> Path:
    """Runs of the same command land in the same folder, so rerunning it resumes."""
    identity = json.dumps({"config": asdict(config), "model": policy.info.name},
                          sort_keys=True, default=str)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return Path("runs") / f"{config.dataset.name}-{'-'.join(config.methods)}-{digest}"


def _run_with_progress(config, policy, scorer, run_dir, prompt):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ttscale.runner import run

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("problems", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return asyncio.run(run(config, policy, scorer, run_dir, prompt, on_problem_done=advance))


def _print_summary(outcome, config, title: str) -> None:
    from ttscale.summary import render_table, summarize

    rows = summarize(outcome.records, config.jobs())
    out.print(render_table(rows, title))
    note = f"{outcome.new_records} new record(s) in {outcome.seconds:.1f} s"
    if outcome.policy_generated_tokens and outcome.seconds > 0:
        note += (f", {outcome.policy_generated_tokens} tokens generated "
                 f"({outcome.policy_generated_tokens / outcome.seconds:.0f} tok/s)")
    note += f"; records: {outcome.run_dir / 'records.jsonl'}"
    if outcome.skipped_bad_lines:
        note += f"; {outcome.skipped_bad_lines} unreadable line(s) skipped (see warnings)"
    out.print(note, highlight=False)


@app.command()
def run(
    dataset: Annotated[str, typer.Option(help="math500, aime24, gsm8k, gsm8k_train, or a "
                                              "JSONL file with problem and answer fields")
                       ] = "gsm8k",
    method: Annotated[str, typer.Option(help="comma-separated: greedy, majority, bon, beam, "
                                             "dvts")] = "bon",
    n: Annotated[str, typer.Option("--n", help="budgets N (generated paths), e.g. 4,16,64")
                 ] = "4",
    width: Annotated[int, typer.Option(help="beam width M for beam and dvts")] = 4,
    prm: PrmOpt = "self",
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    prm_format: PrmFormatOpt = "qwen-prm",
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = False,
    step_agg: Annotated[str, typer.Option(help="last, min, mean or prod")] = "last",
    answer_agg: Annotated[str, typer.Option(help="prm_max, prm_vote or majority")
                          ] = "prm_vote",
    limit: Annotated[int | None, typer.Option(help="at most this many problems")] = None,
    offset: Annotated[int, typer.Option(help="skip this many problems first")] = 0,
    ids: Annotated[str | None, typer.Option(help="comma-separated problem ids")] = None,
    levels: Annotated[str | None, typer.Option(help="MATH levels, e.g. 1,2")] = None,
    shuffle_seed: Annotated[int | None, typer.Option(help="shuffle problems first")] = None,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_step_tokens: int = 2048,
    max_depth: int = 40,
    max_solution_tokens: int = 4096,
    step_delimiter: Annotated[str | None, typer.Option(
        help="text that ends a step (default: a line for --prompt fewshot, a blank line for "
             "chat); escapes like \\n are understood")] = None,
    engine: EngineOpt = "llama.cpp",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    n_ctx: Annotated[int, typer.Option(help="llama.cpp KV cache size in tokens")] = 32768,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    prompt: PromptOpt = "fewshot",
    chat_template: TemplateOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default: one "
                                                              "named after the settings)")
                       ] = None,
    verbose: bool = False,
) -> None:
    """Run methods × budgets over a dataset; resumable (rerun the same command to finish)."""
    _setup_logging(verbose)
    try:
        from ttscale.rewards import canonical_spec, check_scorer_spec, load_scorer
        from ttscale.runner import DatasetSelection, RunConfig
        from ttscale.search.context import SearchSettings

        scorer = canonical_spec(prm)
        scorer_options = _scorer_options(prm_device, prm_dtype, prm_format, trust_remote_code,
                                         prm_params)
        settings = SearchSettings(
            temperature=temperature, top_p=top_p, max_step_tokens=max_step_tokens,
            max_depth=max_depth, max_solution_tokens=max_solution_tokens, width=width,
            step_aggregation=step_agg, answer_aggregation=answer_agg,  # type: ignore[arg-type]
            step_delimiter=_unescape(step_delimiter), seed=seed)
        selection = DatasetSelection(
            name=dataset, ids=_csv(ids, "--ids") if ids else None,
            levels=_ints(levels, "--levels") if levels else None, limit=limit, offset=offset,
            shuffle_seed=shuffle_seed)
        config = RunConfig(dataset=selection, methods=_csv(method, "--method"),
                           budgets=_ints(n, "--n"), scorer=scorer, settings=settings)
        selection.load()  # bad dataset input fails before a model is loaded
        check_scorer_spec(scorer, scorer_options)  # so does a PRM of the wrong format
        policy = _engine(engine, model, base_url, params, n_ctx, threads, device, dtype,
                         trust_remote_code)
        scorer_obj = load_scorer(scorer, policy=policy, options=scorer_options)
        prompt_format = _prompt(prompt, chat_template, policy)
        run_dir = out_dir or _default_run_dir(config, policy)
        outcome = _run_with_progress(config, policy, scorer_obj, run_dir, prompt_format)
    except (TTScaleError, ValueError) as error:
        _fail(str(error))
    _print_summary(outcome, config, f"{dataset}: {policy.info.name}, scorer {scorer}")


@app.command()
def demo(
    limit: Annotated[int, typer.Option(help="GSM8K test problems")] = 8,
    n: Annotated[int, typer.Option("--n", help="budget N for every method")] = 4,
    width: Annotated[int, typer.Option(help="beam width M")] = 2,
    out_dir: Annotated[Path, typer.Option("--out")] = Path("runs/demo"),
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    verbose: bool = False,
) -> None:
    """The main job on the embedded model: greedy vs majority vote vs Best-of-N vs beam search
    vs DVTS on a small GSM8K subset, as a table (and a saved, resumable run)."""
    _setup_logging(verbose)
    try:
        from ttscale.rewards import load_scorer
        from ttscale.runner import DatasetSelection, RunConfig
        from ttscale.search.context import SearchSettings

        settings = SearchSettings(max_step_tokens=64, max_depth=10, max_solution_tokens=256,
                                  width=width, seed=0)
        config = RunConfig(dataset=DatasetSelection("gsm8k", limit=limit),
                           methods=("greedy", "majority", "bon", "beam", "dvts"),
                           budgets=(n,), scorer="confidence", settings=settings)
        policy = _engine("llama.cpp", model, None, None, 16384, threads)
        prompt_format = _prompt("fewshot", None, policy)
        outcome = _run_with_progress(config, policy, load_scorer("confidence", policy=policy),
                                     out_dir, prompt_format)
    except (TTScaleError, ValueError) as error:
        _fail(str(error))
    _print_summary(outcome, config, f"ttscale demo: GSM8K test, first {limit} problems, "
                                    f"{policy.info.name}, N={n}, M={width}, scorer confidence")


@app.command()
def solve(
    problem: Annotated[str, typer.Argument(help="the problem text")],
    method: Annotated[str, typer.Option(help="greedy, majority, bon, beam or dvts")] = "beam",
    n: Annotated[int, typer.Option("--n", help="budget N")] = 8,
    width: int = 4,
    prm: PrmOpt = "self",
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    prm_format: PrmFormatOpt = "qwen-prm",
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = False,
    engine: EngineOpt = "llama.cpp",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    prompt: PromptOpt = "fewshot",
    chat_template: TemplateOpt = None,
    max_step_tokens: int = 256,
    max_depth: int = 12,
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    verbose: bool = False,
) -> None:
    """Solve one problem: print the best answer and its steps."""
    _setup_logging(verbose)
    try:
        from dataclasses import asdict as to_dict

        from ttscale.api import solve_async
        from ttscale.rewards import check_scorer_spec, load_scorer
        from ttscale.search.context import SearchSettings

        if not problem.strip():
            raise ValueError("the problem text is empty")
        scorer_options = _scorer_options(prm_device, prm_dtype, prm_format, trust_remote_code,
                                         prm_params)
        check_scorer_spec(prm, scorer_options)
        settings = SearchSettings(width=width, max_step_tokens=max_step_tokens,
                                  max_depth=max_depth, max_solution_tokens=max_step_tokens * 4,
                                  seed=seed)
        policy = _engine(engine, model, base_url, params, device=device, dtype=dtype,
                         trust_remote_code=trust_remote_code)
        scorer = load_scorer(prm, policy=policy, options=scorer_options)
        result = asyncio.run(solve_async(problem, policy=policy, method=method, n=n,
                                         scorer=scorer, settings=settings,
                                         prompt=_prompt(prompt, chat_template, policy)))
    except (TTScaleError, ValueError) as error:
        _fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(to_dict(result), indent=2) + "\n")
        return
    for number, step in enumerate(result.steps, start=1):
        out.print(f"[dim]step {number}[/]  {step}", highlight=False)
    out.print(f"[bold]answer:[/] {result.answer}", highlight=False)


@app.command()
def prms() -> None:
    """List the step scorers and PRM formats that --prm accepts, with how each reads a step."""
    from rich.table import Table

    from ttscale.rewards import CATALOGUE

    table = Table("--prm", "kind", "input format and read-out", title="step scorers and PRMs")
    for entry in CATALOGUE:
        if entry.kind == "checkpoint":
            spec = f"{entry.name}:PATH"
        elif entry.kind == "http":
            spec = "http://HOST:PORT"
        else:
            spec = " | ".join((*entry.aliases, entry.name))
        table.add_row(spec, entry.kind, entry.summary)
    table.add_row("none", "-", "no scorer (greedy, majority vote)")
    out.print(table)


prm_app = typer.Typer(help="Process reward models: serve one over HTTP.", no_args_is_help=True)
app.add_typer(prm_app, name="prm")


@prm_app.command("serve")
def prm_serve(
    prm: Annotated[str, typer.Option(help="FORMAT:PATH with FORMAT qwen-prm or math-shepherd "
                                          "and PATH a local checkpoint folder")],
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps it local")
                    ] = "127.0.0.1",
    port: int = 8001,
    api_key: Annotated[str | None, typer.Option(
        envvar="TTSCALE_API_KEY", help="require 'Authorization: Bearer KEY'")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="model name clients use (default: the checkpoint folder's name)")] = None,
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Serve a PRM checkpoint over vLLM's pooling API (POST /pooling), so that runs elsewhere
    can score with --prm http://HOST:PORT."""
    _setup_logging(False)
    try:
        from ttscale.prm_server import serve

        serve(prm, host=host, port=port, api_key=api_key, model_name=served_model_name,
              device=prm_device, dtype=prm_dtype, threads=threads)
    except (TTScaleError, ValueError) as error:
        _fail(str(error))


if __name__ == "__main__":  # pragma: no cover
    app()
