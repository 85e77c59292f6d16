"""The options several commands share, each declared once, and the settings object each block of
them builds: the dataset, the search, the scorer, the engine and the prompt.

A command's default for a shared option is read from the settings class it fills (a frozen
dataclass's class attribute holds its default), so each default is written in one place."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ttscale.cli.parsing import BudgetsByMethod, CommaList, parse_csv, parse_ints, unescape
from ttscale.engines import EngineSpec
from ttscale.errors import ConfigError
from ttscale.prompts import PromptFormat
from ttscale.registry import parse_choice
from ttscale.rewards import ScorerOptions
from ttscale.run.runner import DatasetSelection
from ttscale.settings import SAMPLING_PRESETS, SearchSettings

# -- recipe files ----------------------------------------------------------------------------
RECIPE_KEY = "ttscale.recipe"  # where --config leaves the recipe it read, in the context's meta


def recipe_of(ctx: typer.Context):
    """The recipe that --config read for this command, or None."""
    return ctx.meta.get(RECIPE_KEY)


def _apply_recipe(ctx: typer.Context, param: typer.CallbackParam,
                  path: Path | None) -> Path | None:
    if path is not None:  # loaded only when asked for: pydantic and yaml take time to import
        from ttscale.cli.recipe import apply_recipe

        apply_recipe(ctx, path)
    return path


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", is_eager=True, callback=_apply_recipe,
    help="a YAML recipe: its keys (the options' names, e.g. max_step_tokens) become the "
         "defaults, options on the command line override them; see recipes/")]

# -- every command ---------------------------------------------------------------------------
VerboseOpt = Annotated[bool, typer.Option(help="log debug messages")]

# -- the dataset -----------------------------------------------------------------------------
DatasetOpt = Annotated[str, typer.Option(help="math500, aime24, gsm8k, gsm8k_train, ladder, or "
                                              "a JSONL file with problem and answer fields")]
LimitOpt = Annotated[int | None, typer.Option(help="at most this many problems")]
OffsetOpt = Annotated[int, typer.Option(help="skip this many problems first")]
IdsOpt = Annotated[str | None, typer.Option(help="comma-separated problem ids"), CommaList(str)]
LevelsOpt = Annotated[str | None, typer.Option(
    help="levels (MATH's 1-5, the ladder's operations), e.g. 1,2"), CommaList(int)]
ShuffleSeedOpt = Annotated[int | None, typer.Option(help="shuffle problems first")]

# -- what runs -------------------------------------------------------------------------------
MethodsOpt = Annotated[str, typer.Option(
    "--method", help="comma-separated search methods (`ttscale methods` lists them), e.g. "
                     "greedy,majority,bon,beam,dvts; auto: the planner, see --plan"),
    CommaList(str)]
BudgetsOpt = Annotated[str, typer.Option(
    "--n", "--budget", help="budgets N (generated paths), e.g. 4,16,64"), CommaList(int)]
MethodBudgetsOpt = Annotated[list[str] | None, typer.Option(
    "--method-n", help="budgets of one method in place of --n, e.g. --method-n beam=4,16 "
                       "(repeat for more methods)"), BudgetsByMethod()]
ParallelOpt = Annotated[int, typer.Option(
    help="problems searched at once; their engine calls batch together (1: one after "
         "another, bit-reproducible; raise it for a GPU server)")]

# -- the search ------------------------------------------------------------------------------
TemperatureOpt = Annotated[float, typer.Option(help="sampling temperature")]
TopPOpt = Annotated[float, typer.Option(help="nucleus sampling: the top-p of each token")]
SamplingOpt = Annotated[str | None, typer.Option(
    help="a model family's recommended temperature and top-p: " + ", ".join(
        f"{name} ({p['temperature']} / {p['top_p']})" for name, p in SAMPLING_PRESETS.items())
    + "; --temperature or --top-p given as well win")]
MaxStepTokensOpt = Annotated[int, typer.Option(help="tokens per step at most")]
MaxDepthOpt = Annotated[int, typer.Option(help="steps per solution at most")]
MaxSolutionTokensOpt = Annotated[int, typer.Option(help="tokens per solution at most")]
StepDelimiterOpt = Annotated[str | None, typer.Option(
    help="text that ends a step (default: a line for --prompt fewshot, a blank line for "
         "chat); escapes like \\n are understood")]
WidthOpt = Annotated[int, typer.Option(help="beam width M for beam and dvts")]
StepAggOpt = Annotated[str, typer.Option(help="last, min, mean or prod")]
AnswerAggOpt = Annotated[str, typer.Option(help="prm_max, prm_vote or majority")]
SeedOpt = Annotated[int, typer.Option(help="sampling seed")]

# -- the scorer ------------------------------------------------------------------------------
DEFAULT_PRM = "self"  # the policy's own confidence, by the name users type
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

# -- the engine ------------------------------------------------------------------------------
EngineOpt = Annotated[str, typer.Option(help="llama.cpp (in-process, default), hf "
                                             "(transformers, in-process; extra hf), vllm "
                                             "(in-process on a GPU; extra vllm), openai "
                                             "(any OpenAI-compatible server: vLLM, SGLang, "
                                             "llama-server, Ollama) or openai-chat (its chat "
                                             "endpoint and reasoning parser; whole solutions, "
                                             "--prompt messages)")]
ModelOpt = Annotated[str | None, typer.Option(
    help="GGUF path for llama.cpp (default: the embedded SmolLM2-135M), a model folder, "
         ".gguf file or hub name for --engine hf, or the served model name for --engine "
         "openai (default: the one the server lists)")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="server URL for --engine openai, e.g. "
                                                     "http://127.0.0.1:8000/v1")]
ParamsOpt = Annotated[float | None, typer.Option(
    "--params", help="policy parameter count for FLOPs, when the server does not say (7e9)")]
NCtxOpt = Annotated[int, typer.Option(help="llama.cpp KV cache size in tokens")]
ThreadsOpt = Annotated[int | None, typer.Option(
    help="llama.cpp CPU threads (default: $TTSCALE_THREADS, else all cores). Their OpenMP "
         "threads wait passively between steps unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is "
         "set, so other jobs on the machine slow them only by the cores they take")]
DeviceOpt = Annotated[str, typer.Option(help="--engine hf device: cpu, cuda, cuda:N")]
DtypeOpt = Annotated[str, typer.Option(help="--engine hf weights: auto (bf16 on GPU, fp32 on "
                                            "CPU), float32, bfloat16, float16")]
ConcurrencyOpt = Annotated[int, typer.Option(
    help="--engine openai: requests in flight at most (keep the server's batch full)")]

# -- the prompt ------------------------------------------------------------------------------
PromptOpt = Annotated[str, typer.Option(help="fewshot (plain few-shot, for small models), "
                                             "fewshot:FILE (your own examples, {problem} "
                                             "where the problem goes), chat (the paper's "
                                             "system prompt + chat template) or messages "
                                             "(the same, rendered by the server: "
                                             "--engine openai-chat)")]
TemplateOpt = Annotated[str | None, typer.Option(
    help="chat template: chatml, llama3, qwen3, deepseek-r1 or a .jinja file (default: the "
         "model's own)")]
ThinkingBudgetOpt = Annotated[int | None, typer.Option(
    help="a reasoning policy's thought: at most this many tokens, then the thought is closed "
         "and the answer forced (budget forcing)")]
ProbeEveryOpt = Annotated[int | None, typer.Option(
    help="early exit: ask for the answer every this many thought tokens and stop thinking "
         "once --probe-agreement answers in a row agree (Dynasor-CoT)")]
ProbeAgreementOpt = Annotated[int, typer.Option(
    help="early exit: this many probes in a row with the same answer end the thought")]
ParticleTemperatureOpt = Annotated[float, typer.Option(
    help="particle filtering and Gibbs: the weights are softmax(logit(score) / this). 1 is "
         "the paper's; raise it (e.g. 16) for a coarse scorer such as arith, whose weights at "
         "1 copy one particle into every slot")]
ThinkingOpt = Annotated[str, typer.Option(
    help="a reasoning policy's thought (<think> … </think>): auto (as the chat template "
         "says), on, or off (Qwen3's enable_thinking=False; an R1 thought closed at once)")]

# -- servers ---------------------------------------------------------------------------------
DEFAULT_HOST = "127.0.0.1"  # this machine only, until the user opens it up
HostOpt = Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps it local")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    envvar="TTSCALE_API_KEY", help="require 'Authorization: Bearer KEY'")]

# -- each block's settings object ------------------------------------------------------------


def pick(build: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """The options that ``build``'s parameters name: a command holds every block's options,
    each builder takes its own."""
    names = inspect.signature(build).parameters
    return {name: value for name, value in options.items() if name in names}


def from_options(build: Callable, options: dict[str, Any]):
    return build(**pick(build, options))


def dataset_selection(dataset: str = DatasetSelection.name, limit: int | None = None,
                      offset: int = DatasetSelection.offset, ids: str | None = None,
                      levels: str | None = None,
                      shuffle_seed: int | None = None) -> DatasetSelection:
    return DatasetSelection(
        name=dataset, ids=parse_csv(ids, "--ids") if ids else None,
        levels=parse_ints(levels, "--levels") if levels else None, limit=limit, offset=offset,
        shuffle_seed=shuffle_seed)


def with_sampling_preset(options: dict[str, Any]) -> dict[str, Any]:
    """The options with ``--sampling``'s temperature and top-p, except those the user gave
    (on the command line, in a recipe or the environment)."""
    name = options.get("sampling")
    if not name:
        return options
    preset = SAMPLING_PRESETS[parse_choice("sampling preset", name, tuple(SAMPLING_PRESETS))]
    ctx = options.get("ctx")

    def given(option: str) -> bool:
        source = ctx.get_parameter_source(option) if ctx is not None else None
        return source is not None and source.name != "DEFAULT"

    return {**options, **{k: v for k, v in preset.items() if not given(k)}}


def search_settings(temperature: float = SearchSettings.temperature,
                    top_p: float = SearchSettings.top_p,
                    max_step_tokens: int = SearchSettings.max_step_tokens,
                    max_depth: int = SearchSettings.max_depth,
                    max_solution_tokens: int = SearchSettings.max_solution_tokens,
                    width: int = SearchSettings.width,
                    step_agg: str = SearchSettings.step_aggregation,
                    answer_agg: str = SearchSettings.answer_aggregation,
                    step_delimiter: str | None = None,
                    seed: int = SearchSettings.seed,
                    thinking_budget: int | None = SearchSettings.thinking_budget,
                    probe_every: int | None = SearchSettings.probe_every,
                    probe_agreement: int = SearchSettings.probe_agreement,
                    particle_temperature: float = SearchSettings.particle_temperature,
                    ) -> SearchSettings:
    return SearchSettings(
        temperature=temperature, top_p=top_p, max_step_tokens=max_step_tokens,
        max_depth=max_depth, max_solution_tokens=max_solution_tokens, width=width,
        step_aggregation=step_agg, answer_aggregation=answer_agg,  # type: ignore[arg-type]
        step_delimiter=unescape(step_delimiter), seed=seed, thinking_budget=thinking_budget,
        probe_every=probe_every, probe_agreement=probe_agreement,
        particle_temperature=particle_temperature)


def scorer_options(prm_device: str = ScorerOptions.device, prm_dtype: str = ScorerOptions.dtype,
                   prm_format: str = ScorerOptions.http_format,
                   trust_remote_code: bool = ScorerOptions.trust_remote_code,
                   prm_params: float | None = None) -> ScorerOptions:
    from ttscale.rewards.http_prm import FORMATS

    parse_choice("PRM format for http", prm_format, FORMATS)
    return ScorerOptions(device=prm_device, dtype=prm_dtype, trust_remote_code=trust_remote_code,
                         http_format=prm_format,
                         parameters=int(prm_params) if prm_params else None)


def engine_spec(engine: str = EngineSpec.kind, model: str | None = None,
                base_url: str | None = None, params: float | None = None,
                n_ctx: int = EngineSpec.n_ctx, threads: int | None = None,
                device: str = EngineSpec.device, dtype: str = EngineSpec.dtype,
                trust_remote_code: bool = EngineSpec.trust_remote_code,
                concurrency: int = EngineSpec.concurrency) -> EngineSpec:
    return EngineSpec(kind=engine, model=model, base_url=base_url,
                      parameters=int(params) if params else None, n_ctx=n_ctx,
                      n_threads=threads, device=device, dtype=dtype,
                      trust_remote_code=trust_remote_code, concurrency=concurrency)


def load_engine(**engine_options):
    """The policy engine the engine options name (see ``engine_spec``)."""
    from ttscale.engines import load_policy

    return load_policy(engine_spec(**engine_options))


def prompt_format(kind: str, template: str | None, policy,
                  thinking: str = PromptFormat.thinking) -> PromptFormat:
    from ttscale.prompts import read_fewshot_file, resolve_chat_template

    if policy is not None and getattr(policy, "reads_messages", False) != (kind == "messages"):
        raise ConfigError("--prompt messages goes with --engine openai-chat (the server renders "
                          "the messages), and that engine takes no other prompt")
    if kind.startswith("fewshot:"):
        return PromptFormat(kind="fewshot", fewshot=read_fewshot_file(kind.split(":", 1)[1]),
                            thinking=thinking)
    chat_template = None
    if kind == "chat":
        chat_template = resolve_chat_template(
            template, policy.info.chat_template if policy is not None else None)
    return PromptFormat(kind=kind, chat_template=chat_template, thinking=thinking)
