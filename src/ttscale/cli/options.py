"""What the ``ttscale`` commands share: consoles, error exits, parsing helpers, the options for
the engine, the prompt and the scorer, and loading them."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)


def parse_csv(value: str, kind: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        fail(f"{kind} is empty; give a comma-separated list")
    return items


def parse_ints(value: str, kind: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in parse_csv(value, kind))
    except ValueError:
        fail(f"{kind} must be comma-separated integers, got {value!r}")
    raise AssertionError  # unreachable


def unescape(text: str | None) -> str | None:
    return None if text is None else text.encode("utf-8").decode("unicode_escape")


# Options shared by run, demo and solve ----------------------------------------------------
EngineOpt = Annotated[str, typer.Option(help="llama.cpp (in-process, default), hf "
                                             "(transformers, in-process; extra hf), vllm "
                                             "(in-process on a GPU; extra vllm) or openai "
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
PromptOpt = Annotated[str, typer.Option(help="fewshot (plain few-shot, for small models), "
                                             "fewshot:FILE (your own examples, {problem} "
                                             "where the problem goes) or chat (the paper's "
                                             "system prompt + chat template)")]
TemplateOpt = Annotated[str | None, typer.Option(
    help="chat template: chatml, llama3 or a .jinja file (default: the model's own)")]


PrmOpt = Annotated[str, typer.Option(
    "--prm", "--scorer",
    help="step scorer: self (policy confidence), arith (exact arithmetic checker), grounded "
         "(arithmetic, operands from the problem or earlier steps, progress, the answer "
         "computed; use with --step-agg min), agreement, "
         "judge (the policy as a judge), FORMAT:PATH for a PRM checkpoint (qwen-prm, "
         "math-shepherd, rlhflow, skywork), http://HOST:PORT for a served PRM, or none. "
         "`ttscale prms` lists them")]
PrmDeviceOpt = Annotated[str, typer.Option(help="device of an in-process PRM: cpu, cuda, "
                                                "cuda:N")]
PrmDtypeOpt = Annotated[str, typer.Option(help="PRM weights: auto (bf16 on GPU, fp32 on CPU), "
                                               "float32, bfloat16, float16")]
PrmFormatOpt = Annotated[str, typer.Option(help="input format of a PRM behind --prm http://... "
                                                "(one `ttscale prms` lists as servable)")]
PrmParamsOpt = Annotated[float | None, typer.Option(
    "--prm-params", help="parameter count of a PRM behind --prm http://..., for FLOPs (7e9)")]
TrustOpt = Annotated[bool, typer.Option(help="let transformers run a checkpoint's own Python "
                                             "code, for --engine hf and in-process PRMs (off: "
                                             "ttscale applies PRM heads itself)")]


ThreadsOpt = Annotated[int | None, typer.Option(
    help="llama.cpp CPU threads (default: $TTSCALE_THREADS, else all cores). Their OpenMP "
         "threads wait passively between steps unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is "
         "set, so other jobs on the machine slow them only by the cores they take")]


def engine_spec_from(engine: str, model: str | None, base_url: str | None,
                     params: float | None, n_ctx: int = 32768, threads: int | None = None,
                     device: str = "cpu", dtype: str = "auto", trust_remote_code: bool = False,
                     concurrency: int = 64):
    from ttscale.engines import EngineSpec

    return EngineSpec(kind=engine, model=model, base_url=base_url,
                      parameters=int(params) if params else None, n_ctx=n_ctx,
                      n_threads=threads, device=device, dtype=dtype,
                      trust_remote_code=trust_remote_code, concurrency=concurrency)


def load_engine(*args, **kwargs):
    """The policy engine the command-line options name (see ``engine_spec_from``)."""
    from ttscale.engines import load_policy

    return load_policy(engine_spec_from(*args, **kwargs))


def scorer_options(device: str, dtype: str, http_format: str, trust: bool,
                    parameters: float | None = None):
    from ttscale.registry import parse_choice
    from ttscale.rewards import ScorerOptions
    from ttscale.rewards.http_prm import FORMATS

    parse_choice("PRM format for http", http_format, FORMATS)
    return ScorerOptions(device=device, dtype=dtype, trust_remote_code=trust,
                         http_format=http_format,
                         parameters=int(parameters) if parameters else None)


def prompt_format(kind: str, template: str | None, policy):
    from ttscale.prompts import PromptFormat, read_fewshot_file, resolve_chat_template

    if kind.startswith("fewshot:"):
        return PromptFormat(kind="fewshot", fewshot=read_fewshot_file(kind.split(":", 1)[1]))
    chat_template = None
    if kind == "chat":
        chat_template = resolve_chat_template(
            template, policy.info.chat_template if policy is not None else None)
    return PromptFormat(kind=kind, chat_template=chat_template)


MethodBudgetsOpt = Annotated[list[str] | None, typer.Option(
    "--method-n", help="budgets of one method in place of --n, e.g. --method-n beam=4,16 "
                       "(repeat for more methods)")]


def parse_method_budgets(values: list[str] | None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    pairs = []
    for value in values or ():
        method, sign, budgets = value.partition("=")
        if not sign or not method.strip():
            fail(f"--method-n takes METHOD=N,N..., e.g. beam=4,16; got {value!r}")
        pairs.append((method.strip(), parse_ints(budgets, f"--method-n {method.strip()}")))
    return tuple(pairs)
