"""``ttscale serve``: the OpenAI-compatible server, on the embedded model by default."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import fail, out
from ttscale.cli.options import (
    DEFAULT_HOST,
    ApiKeyOpt,
    BaseUrlOpt,
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    HostOpt,
    MaxDepthOpt,
    MaxStepTokensOpt,
    ModelOpt,
    NCtxOpt,
    ParamsOpt,
    ParticleTemperatureOpt,
    PrmDeviceOpt,
    PrmDtypeOpt,
    PrmFormatOpt,
    PrmParamsOpt,
    PromptOpt,
    TemperatureOpt,
    TemplateOpt,
    ThinkingOpt,
    ThreadsOpt,
    TrustOpt,
    engine_spec,
    from_options,
    pick,
    prompt_format,
    scorer_options,
)
from ttscale.engines import EngineSpec
from ttscale.errors import TTScaleError
from ttscale.prompts import PromptFormat
from ttscale.rewards import ScorerOptions
from ttscale.serve.app import ServerConfig
from ttscale.serve.requests import SERVED_METHODS, ServerDefaults, ServerLimits
from ttscale.settings import SearchSettings

SERVE_PORT = 8000  # where OpenAI-compatible servers listen by default
SERVE_CONTEXT = 16384  # the KV cache every search in flight shares
SERVE_LOG_LEVEL = "info"


ServedNameOpt = Annotated[str | None, typer.Option(
    help="the model name clients send (default: the policy's name)")]
ServedMethodOpt = Annotated[str, typer.Option(
    help="search for requests that name none (`ttscale methods` lists them; auto: the planner "
         "picks)")]
ServedBudgetOpt = Annotated[int, typer.Option("--budget", "--n", help="default budget N")]
ServedWidthOpt = Annotated[int, typer.Option(help="default beam width M")]
ScorersOpt = Annotated[list[str] | None, typer.Option(
    "--prm", "--scorer",
    help="a scorer to load (repeat for more; the first is the default): self, arith, "
         "judge, FORMAT:PATH, http://HOST:PORT or none. Requests may also name the "
         "model-free ones without it")]
ServedPlanOpt = Annotated[Path | None, typer.Option(
    help="plan file for method auto (default: the paper's prior rules)")]
MaxTokensOpt = Annotated[int, typer.Option(help="default tokens per solution")]
MaxRunningOpt = Annotated[int, typer.Option(
    help="searches run at once (their engine calls share batches)")]
MaxWaitingOpt = Annotated[int, typer.Option(
    help="searches that may wait for a slot (a waiting request holds only its body); past "
         "that, or when the wait would outlast --request-timeout, 429")]
MaxBudgetOpt = Annotated[int, typer.Option(help="the largest budget a request may ask")]
MaxTokensLimitOpt = Annotated[int, typer.Option(help="the largest max_tokens a request may ask")]
RequestTimeoutOpt = Annotated[float, typer.Option(
    help="seconds a request may take, waiting included; then 504")]
MaxBodyOpt = Annotated[int, typer.Option(help="the largest request body")]
LogLevelOpt = Annotated[str, typer.Option(help="debug, info, warning or error")]


def serve(
    config: ConfigOpt = None,
    host: HostOpt = DEFAULT_HOST,
    port: int = SERVE_PORT,
    api_key: ApiKeyOpt = None,
    served_model_name: ServedNameOpt = None,
    method: ServedMethodOpt = ServerDefaults.method,
    budget: ServedBudgetOpt = ServerDefaults.budget,
    width: ServedWidthOpt = ServerDefaults.width,
    prm: ScorersOpt = None,
    plan: ServedPlanOpt = None,
    max_tokens: MaxTokensOpt = ServerDefaults.max_tokens,
    max_step_tokens: MaxStepTokensOpt = ServerConfig.max_step_tokens,
    max_depth: MaxDepthOpt = ServerConfig.max_depth,
    temperature: TemperatureOpt = ServerDefaults.temperature,
    particle_temperature: ParticleTemperatureOpt = ServerDefaults.particle_temperature,
    max_running: MaxRunningOpt = ServerConfig.max_running,
    max_waiting: MaxWaitingOpt = ServerConfig.max_waiting,
    max_budget: MaxBudgetOpt = ServerLimits.max_budget,
    max_tokens_limit: MaxTokensLimitOpt = ServerLimits.max_tokens,
    request_timeout: RequestTimeoutOpt = ServerConfig.request_timeout_s,
    max_body_bytes: MaxBodyOpt = ServerConfig.max_body_bytes,
    engine: EngineOpt = EngineSpec.kind,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    device: DeviceOpt = EngineSpec.device,
    dtype: DtypeOpt = EngineSpec.dtype,
    threads: ThreadsOpt = None,
    n_ctx: NCtxOpt = SERVE_CONTEXT,
    prm_device: PrmDeviceOpt = ScorerOptions.device,
    prm_dtype: PrmDtypeOpt = ScorerOptions.dtype,
    prm_format: PrmFormatOpt = ScorerOptions.http_format,
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = EngineSpec.trust_remote_code,
    prompt: PromptOpt = PromptFormat.kind,
    chat_template: TemplateOpt = None,
    thinking: ThinkingOpt = PromptFormat.thinking,
    log_level: LogLevelOpt = SERVE_LOG_LEVEL,
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions) that answers
    each request with a test-time scaling search: point any OpenAI client at it."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        _serve(dict(locals()))  # every option by name
    except (TTScaleError, ValueError) as error:
        fail(str(error))


def _serve(options: dict) -> None:
    """Load the policy and scorers, then answer requests until interrupted."""
    from ttscale.engines import load_policy
    from ttscale.serve.app import load_service
    from ttscale.serve.app import serve as run_server

    specs, scoring = _scorers(options["prm"], options)
    server = from_options(server_config, {**options, "prm": specs[0]})
    # every search in flight may have its whole budget out at once
    in_flight = options["max_running"] * options["budget"]
    policy = load_policy(engine_spec(**pick(engine_spec, options),
                                     concurrency=max(EngineSpec.concurrency, in_flight)))
    service = load_service(engine=policy, prm=specs, config=server, plan_path=options["plan"],
                           prompt=prompt_format(options["prompt"], options["chat_template"],
                                                policy, options["thinking"]),
                           scorer_options=scoring)
    out.print(f"serving {service.model_name} on http://{options['host']}:{options['port']}/v1 "
              f"(default: {options['method']}, budget {options['budget']}, scorer {specs[0]}; "
              f"{'API key required' if server.api_key else 'no API key'})", highlight=False)
    run_server(service, host=options["host"], port=options["port"],
               log_level=options["log_level"].lower())


def _scorers(prm: list[str] | None, options: dict):
    """(the scorer specs to load, checked, the first the default; their options)."""
    from ttscale.rewards import check_scorer_spec

    if options["method"] not in SERVED_METHODS:
        raise ValueError(f"unknown --method {options['method']!r}; use one of "
                         f"{', '.join(SERVED_METHODS)}")
    specs = prm or [ServerDefaults.prm]
    scoring = from_options(scorer_options, options)
    for spec in specs:
        check_scorer_spec(spec, scoring)
    return specs, scoring


def server_config(method: str, budget: int, width: int, prm: str, max_tokens: int,
                  temperature: float, particle_temperature: float, max_budget: int,
                  max_tokens_limit: int,
                  max_step_tokens: int, max_depth: int, max_running: int, max_waiting: int,
                  request_timeout: float, max_body_bytes: int, api_key: str | None,
                  served_model_name: str | None) -> ServerConfig:
    """How the server searches and what it accepts, from its options."""
    # a bad default is refused here, once, rather than in every request that takes it
    SearchSettings(temperature=temperature, particle_temperature=particle_temperature)
    config = ServerConfig(
        defaults=ServerDefaults(method=method, budget=budget, width=width, prm=prm,
                                max_tokens=max_tokens, temperature=temperature,
                                particle_temperature=particle_temperature),
        limits=ServerLimits(max_budget=max_budget, max_tokens=max_tokens_limit),
        max_step_tokens=max_step_tokens, max_depth=max_depth, max_running=max_running,
        max_waiting=max_waiting, request_timeout_s=request_timeout,
        max_body_bytes=max_body_bytes, api_key=api_key or None,
        served_model_name=served_model_name)
    if budget > max_budget or max_tokens > max_tokens_limit:
        raise ValueError("the default --budget and --max-tokens must be within "
                         "--max-budget and --max-tokens-limit")
    return config
